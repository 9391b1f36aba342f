/**
 * src/stream: Kafka in and out.
 * - StreamConsumer: the trainer's consumer group (offsets committed only inside snapshots, DLQ).
 * - EventProducer: writes interactions and items in the Avro contract (`pme replay`, the demo).
 * - codec: the Avro schemas, writer-schema resolution, DecodeError reasons.
 * - ensureTopics: creates the topics the service needs.
 */
export {
  createCodec,
  decodeInteraction,
  decodeItem,
  encodeInteractionMessage,
  encodeItemMessage,
  INTERACTION_SCHEMAS,
  ITEM_SCHEMAS,
  registerInteractionSchema,
  SCHEMA_HEADER,
} from './codec.js';
export {
  type ConsumerOptions,
  type ConsumerStats,
  DecodeError,
  type DlqReason,
  type EventCodec,
  type OffsetMap,
  StreamConsumer,
} from './consumer.js';
export { EventProducer, type ProducerOptions, type RunningStream } from './producer.js';
export { ensureTopics, type TopicNames } from './topics.js';
