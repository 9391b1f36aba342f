/**
 * src/stream: Kafka in and out.
 * - StreamConsumer: the trainer's consumer group (offsets committed only inside snapshots, DLQ).
 * - GroupFence: one trainer per group (the newer of two stops).
 * - waitForKafka: a starting service waits for its brokers, bounded.
 * - EventProducer: writes interactions and items in the Avro contract (`pme replay`, the demo).
 * - avro: the Avro schemas, writer-schema resolution (and the schema-registry wire format),
 *   EventDecodeError reasons.
 * - ensureTopics: creates the topics the service needs.
 * - kafkaClient / kafkaConnection: every kafkajs client, built one way (brokers, TLS, SASL).
 * - the parameter topic replicas follow: its record format and packing (param-records.ts:
 *   ParamPacker, unpackRecords, applyRecord) and its producer and follower (params.ts).
 */
export {
  AvroCodec,
  type CodecOptions,
  createInteractionCodec,
  createItemCodec,
  EventDecodeError,
  INTERACTION_SCHEMA,
  ITEM_SCHEMA,
  SCHEMA_HEADER,
  toEventCodec,
} from './avro.js';
export {
  type ConsumerOptions,
  type ConsumerStats,
  DecodeError,
  type DlqReason,
  type EventCodec,
  type ItemSource,
  type OffsetMap,
  type Source,
  type SourceStats,
  StreamConsumer,
  type TopicSource,
} from './consumer.js';
export { GroupFence, trainerClientId } from './fence.js';
export {
  checkSubscription,
  compileItemSubscription,
  compileMapping,
  compileSubscription,
  type ItemDecoder,
  type ItemMapping,
  type JsonDecoder,
  type JsonMapping,
  MappingError,
  type ReadRecord,
  RegistryReader,
  SUBSCRIPTION_FORMATS,
  SUBSCRIPTION_KINDS,
  type Subscription,
  TIMESTAMP_UNITS,
  type TimestampUnit,
} from './json-mapping.js';
export {
  asConnection,
  describeConnection,
  type KafkaConnection,
  type KafkaSasl,
  type KafkaTls,
  kafkaClient,
  kafkaConnection,
  SASL_MECHANISMS,
  type SaslMechanism,
} from './kafka-client.js';
export {
  applyRecord,
  type PackedRecords,
  ParamPacker,
  type ParamRecord,
  RECORDS_PER_PACK,
  unpackRecords,
} from './param-records.js';
export { ensureParamsTopic, type FollowerOptions, ParamsFollower, ParamsPublisher } from './params.js';
export { EventProducer, type ProducerOptions, type RunningStream } from './producer.js';
export { waitForKafka } from './reach.js';
export {
  DLQ_REASON_HEADER,
  DLQ_SOURCE_HEADER,
  dlqTopic,
  ensureTopic,
  ensureTopics,
  type TopicNames,
} from './topics.js';
export { HttpSchemaRegistry, MemorySchemaRegistry, type SchemaRegistryClient } from './wire.js';
