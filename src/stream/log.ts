/**
 * kafkajs logs through this: transient group-coordination errors that kafkajs retries by
 * itself (coordinator not yet available, a rebalance in progress) are not worth a line;
 * everything else at WARN or above is printed once, compactly.
 */
import { type logCreator, logLevel } from 'kafkajs';

const TRANSIENT = /coordinator is not available|not coordinator|rebalanc|leadership election|not the leader/i;

export const kafkaLog: logCreator =
  () =>
  ({ level, log }) => {
    if (level > logLevel.WARN) return;
    const error = typeof log.error === 'string' ? log.error : '';
    if (TRANSIENT.test(error) || TRANSIENT.test(log.message)) return;
    process.stderr.write(`kafka: ${log.message}${error ? `: ${error}` : ''}\n`);
  };
