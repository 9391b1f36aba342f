/**
 * Topics and producers on the test broker (broker.ts). Each producer is connected, and
 * disconnected when its test ends.
 */
import { Kafka, logLevel, type Producer } from 'kafkajs';
import type { Test } from 'tap';
import { EventProducer, ensureTopics } from '../../src/stream/index.js';
import { uniqueName } from './broker.js';

/** A new interactions topic and its `-items` catalog topic, as the service names them; returns the first. */
export async function newTopic(brokers: string, prefix: string, partitions: number): Promise<string> {
  const topic = uniqueName(prefix);
  await ensureTopics(brokers, { interactions: topic, items: `${topic}-items`, partitions });
  return topic;
}

/** The project's producer, which writes events and items as the service's Avro codec reads them. */
export async function eventProducer(t: Test, brokers: string, batchSize: number): Promise<EventProducer> {
  const producer = new EventProducer({ brokers: brokers.split(','), batchSize });
  await producer.connect();
  t.teardown(() => producer.disconnect());
  return producer;
}

/** A bare kafkajs producer, for what the project's producer does not write: JSON, hand-framed
 *  Avro, misfits. */
export async function plainProducer(t: Test, brokers: string): Promise<Producer> {
  const producer = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING }).producer();
  await producer.connect();
  t.teardown(() => producer.disconnect());
  return producer;
}
