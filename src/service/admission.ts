/**
 * The trainer's limits at the door: the codec the consumer decodes with, refusing what the trainer
 * would not learn (an impossible label, more tokens than a row holds, one field name too many, a
 * key part too long) as a DecodeError with its reason, so the consumer sends it to the DLQ and the
 * partition moves on. What passes is learned in full, never cut short.
 */
import type { Trainer } from '../engine/index.js';
import { DecodeError, type EventCodec } from '../stream/index.js';

export function admittingCodec(codec: EventCodec, trainer: Trainer): EventCodec {
  return {
    ...codec,
    decodeInteraction(value, headers, key) {
      const event = codec.decodeInteraction(value, headers, key);
      const rejection = trainer.admit(event);
      if (rejection !== null) throw new DecodeError(rejection.reason, rejection.detail);
      return event;
    },
    decodeItem(value, headers, key) {
      const item = codec.decodeItem(value, headers, key);
      const rejection = trainer.admitItem(item);
      if (rejection !== null) throw new DecodeError(rejection.reason, rejection.detail);
      return item;
    },
  };
}
