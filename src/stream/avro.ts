/**
 * The Avro contract of the topics (DESIGN.md, "Public contract"): `pme.Interaction` on the
 * interactions topic, `pme.Item` on the compacted catalog. Values are written either as a raw
 * Avro body plus a `pme-schema` header naming the writer schema, or, with a schema registry, in the
 * Confluent wire format. Readers resolve older and newer writer schemas (fields added with
 * defaults), and every way an event can be unusable is a {@link DecodeFailureReason} for the DLQ.
 */
import avro, { type Schema, type Type } from 'avsc';
import type { IHeaders } from 'kafkajs';
import type { CatalogItem, Interaction } from '../data/event.js';
import { PmeError } from '../errors.js';
import { DecodeError, type EventCodec } from './consumer.js';
import { frame, framedSchemaId, type SchemaRegistryClient } from './wire.js';

/** Header naming the writer schema of a raw (registry-less) value: its fingerprint. */
export const SCHEMA_HEADER = 'pme-schema';

/** `pme.Interaction`, the current writer and reader schema of the interactions topic. */
export const INTERACTION_SCHEMA: Schema = deepFreeze({
  type: 'record',
  name: 'Interaction',
  namespace: 'pme',
  fields: [
    { name: 'user', type: 'string' },
    { name: 'item', type: 'string' },
    { name: 'label', type: 'float', default: 1.0 },
    { name: 'timestamp', type: { type: 'long', logicalType: 'timestamp-millis' } },
    { name: 'fields', type: { type: 'map', values: 'string' }, default: {} },
  ],
});

/** `pme.Item`, the current writer and reader schema of the items (catalog) topic. */
export const ITEM_SCHEMA: Schema = deepFreeze({
  type: 'record',
  name: 'Item',
  namespace: 'pme',
  fields: [
    { name: 'item', type: 'string' },
    { name: 'fields', type: { type: 'map', values: 'string' }, default: {} },
    { name: 'active', type: 'boolean', default: true },
  ],
});

/** Why an event could not be used; the value of the DLQ reason header and a metrics label. */
export type DecodeFailureReason =
  | 'undecodable'
  | 'unknown-schema'
  | 'missing-user'
  | 'missing-item'
  | 'bad-label'
  | 'oversized';

export const DECODE_FAILURE_REASONS: readonly DecodeFailureReason[] = Object.freeze([
  'undecodable',
  'unknown-schema',
  'missing-user',
  'missing-item',
  'bad-label',
  'oversized',
]);

/**
 * An event that cannot be used. Never retriable: the same bytes fail the same way, so the event
 * goes to the DLQ unchanged with `reason` in a header.
 */
export class EventDecodeError extends DecodeError {
  declare readonly reason: DecodeFailureReason;
  readonly retriable = false;
  constructor(reason: DecodeFailureReason, detail: string) {
    // A DecodeError, so that the consumer's DLQ path classifies it by `reason`.
    super(reason, `${reason}: ${detail}`);
    this.name = 'EventDecodeError';
  }
}

/** Kafka message headers as kafkajs delivers them. */
export type MessageHeaders = IHeaders;

export interface CodecOptions {
  /**
   * Largest value accepted, in bytes; larger ones fail as `oversized` before any decoding.
   * Default 65 536 (an interaction is typically 30 to 200 bytes).
   */
  maxMessageBytes?: number;
  /**
   * A schema registry: values are written and read in the Confluent wire format, and writer
   * schemas are fetched by id. Default: none (raw Avro body plus the `pme-schema` header).
   */
  registry?: SchemaRegistryClient;
  /**
   * With a registry: register the writer schema under {@link subject} and frame values with its id,
   * for a codec that writes (the demo and replay producers). Default false: a reader (the service's
   * consumer) only decodes, by the schema ids its values carry, and never writes the project's
   * schema under the user's subject; its `encode` throws.
   */
  register?: boolean;
  /** Registry subject of the writer schema. Default `<topic>-value` (TopicNameStrategy). */
  subject?: string;
  /** Topic name, for the default subject. Default `interactions` / `items`. */
  topic?: string;
  /**
   * Further writer schemas a registry-less reader should know (e.g. a newer producer's), looked up
   * by the `pme-schema` fingerprint. The current schema is always known. Default none.
   */
  writerSchemas?: Schema[];
}

/** Per writer schema: how to read it, or why it cannot be read. */
interface WriterEntry {
  /** null when writer and reader schemas are the same (no resolution needed). */
  resolver: avro.Resolver | null;
  /** Set when the writer schema cannot be resolved to the reader schema. */
  incompatible: string | null;
}

const IDENTICAL: WriterEntry = Object.freeze({ resolver: null, incompatible: null });

/**
 * Encodes and decodes one record type. Decoding is synchronous and allocates only the record it
 * returns; registry schemas must be loaded first with {@link AvroCodec.prefetch} (once per batch).
 */
export class AvroCodec<T> {
  /** The reader (and writer) type. */
  readonly type: Type;
  /** Fingerprint of the schema's canonical form (see {@link schemaFingerprint}): the `pme-schema` header value. */
  readonly fingerprint: string;
  /** Values decoded as the current schema because they had no `pme-schema` header (no registry). */
  headerless = 0;
  /** Headers to put on every produced message. Frozen. */
  readonly headers: Readonly<Record<string, string>>;
  /** Registry id of the writer schema, or -1 without a registry or when reading only. */
  readonly schemaId: number;
  readonly maxMessageBytes: number;

  readonly #validate: (value: T, key: Buffer | string | null | undefined) => T;
  readonly #registry: SchemaRegistryClient | undefined;
  /** Plain mode: by fingerprint. Registry mode: by schema id. */
  readonly #writers = new Map<string | number, WriterEntry>();
  readonly #fromTombstone: ((key: string) => T) | undefined;

  /** Use {@link createInteractionCodec} / {@link createItemCodec}. */
  constructor(
    schema: Schema,
    validate: (value: T, key: Buffer | string | null | undefined) => T,
    fromTombstone: ((key: string) => T) | undefined,
    options: CodecOptions,
    schemaId: number,
  ) {
    this.type = avro.Type.forSchema(schema);
    this.fingerprint = schemaFingerprint(this.type);
    this.headers = Object.freeze({ [SCHEMA_HEADER]: this.fingerprint });
    this.schemaId = schemaId;
    this.maxMessageBytes = options.maxMessageBytes ?? 65_536;
    this.#validate = validate;
    this.#fromTombstone = fromTombstone;
    this.#registry = options.registry;
    if (!this.#registry) this.#writers.set(this.fingerprint, IDENTICAL);
    else if (schemaId >= 0) this.#writers.set(schemaId, IDENTICAL);
    for (const writer of options.writerSchemas ?? []) this.registerWriterSchema(writer);
  }

  /** The value to produce: a raw Avro body, or the framed body when a registry is configured. */
  encode(value: T): Buffer {
    if (this.#registry && this.schemaId < 0)
      throw new Error(
        'AvroCodec: a reading codec cannot encode with a registry (create it with register: true)',
      );
    const body = this.type.toBuffer(value);
    return this.#registry ? frame(this.schemaId, body) : body;
  }

  /**
   * Teaches a registry-less reader another writer schema (found by its fingerprint in the
   * `pme-schema` header). Returns that fingerprint.
   */
  registerWriterSchema(schema: Schema): string {
    const writer = avro.Type.forSchema(schema);
    const fingerprint = schemaFingerprint(writer);
    if (!this.#writers.has(fingerprint)) this.#writers.set(fingerprint, this.#entryFor(writer));
    return fingerprint;
  }

  /**
   * Loads from the registry the writer schemas of these values that are not known yet, so that
   * {@link decode} can read them. A registry failure leaves them unknown (they then fail as
   * `unknown-schema` unless a later prefetch succeeds). A no-op without a registry.
   */
  async prefetch(values: Iterable<Buffer | null>): Promise<void> {
    const registry = this.#registry;
    if (!registry) return;
    const missing = new Set<number>();
    for (const value of values) {
      if (value === null) continue;
      const id = framedSchemaId(value);
      if (id >= 0 && !this.#writers.has(id)) missing.add(id);
    }
    await Promise.all(
      [...missing].map(async (id) => {
        let schema: Schema;
        try {
          schema = await registry.getSchema(id);
        } catch {
          return;
        }
        this.#writers.set(id, this.#entryFor(avro.Type.forSchema(schema)));
      }),
    );
  }

  /**
   * Decodes and checks one message value.
   * @param key the message key; for the catalog, a null value (tombstone) with a key is that item
   *   made inactive
   * @throws EventDecodeError with the reason the event cannot be used
   */
  decode(value: Buffer | null, headers?: MessageHeaders | null, key?: Buffer | string | null): T {
    if (value === null || value === undefined) {
      if (this.#fromTombstone && key !== null && key !== undefined && key.length > 0) {
        return this.#fromTombstone(key.toString());
      }
      throw new EventDecodeError(this.#fromTombstone ? 'missing-item' : 'undecodable', 'empty value');
    }
    if (value.length > this.maxMessageBytes) {
      throw new EventDecodeError('oversized', `${value.length} bytes > ${this.maxMessageBytes}`);
    }
    let writer: WriterEntry | undefined;
    let body = value;
    if (this.#registry) {
      const id = framedSchemaId(value);
      if (id < 0) throw new EventDecodeError('undecodable', 'not in the schema registry wire format');
      writer = this.#writers.get(id);
      if (writer === undefined) throw new EventDecodeError('unknown-schema', `schema id ${id} is not known`);
      body = value.subarray(5);
    } else {
      const named = headerString(headers?.[SCHEMA_HEADER]);
      if (named === undefined) this.headerless++;
      writer = named === undefined ? IDENTICAL : this.#writers.get(named);
      if (writer === undefined)
        throw new EventDecodeError('unknown-schema', `writer schema ${named} is not known`);
    }
    if (writer.incompatible !== null) throw new EventDecodeError('unknown-schema', writer.incompatible);
    let decoded: T;
    try {
      decoded = this.type.fromBuffer(body, writer.resolver ?? undefined) as T;
    } catch (error) {
      throw new EventDecodeError('undecodable', (error as Error).message);
    }
    return this.#validate(decoded, key);
  }

  #entryFor(writer: Type): WriterEntry {
    if (schemaFingerprint(writer) === this.fingerprint) return IDENTICAL;
    try {
      return { resolver: this.type.createResolver(writer), incompatible: null };
    } catch (error) {
      return { resolver: null, incompatible: `incompatible writer schema: ${(error as Error).message}` };
    }
  }
}

/**
 * First 16 hex digits of the SHA-256 of the schema's Parsing Canonical Form: the `pme-schema`
 * header value (the same as `codec.ts` writes, so either side can read the other's messages).
 */
export function schemaFingerprint(type: Type): string {
  return type.fingerprint('sha256').toString('hex').slice(0, 16);
}

/**
 * The consumer's {@link EventCodec} over these codecs. With a registry, call `prefetch` on each
 * codec with a batch's values before decoding it, or unknown schema ids fail as `unknown-schema`.
 */
export function toEventCodec(
  interactions: AvroCodec<Interaction>,
  items: AvroCodec<CatalogItem>,
): EventCodec {
  return {
    decodeInteraction: (value, headers, key) => interactions.decode(value, headers, key),
    decodeItem: (value, headers, key) => items.decode(value, headers, key),
    headerless: () => interactions.headerless + items.headerless,
    prefetch: async (values) => {
      await Promise.all([interactions.prefetch(values), items.prefetch(values)]);
    },
  };
}

function headerString(header: MessageHeaders[string]): string | undefined {
  if (header === undefined) return undefined;
  const first = Array.isArray(header) ? header[0] : header;
  return first === undefined ? undefined : first.toString();
}

function validateInteraction(event: Interaction): Interaction {
  if (event.user.length === 0) throw new EventDecodeError('missing-user', 'user is empty');
  if (event.item.length === 0) throw new EventDecodeError('missing-item', 'item is empty');
  if (!Number.isFinite(event.label)) throw new EventDecodeError('bad-label', `label is ${event.label}`);
  return event;
}

function validateItem(item: CatalogItem): CatalogItem {
  if (item.item.length === 0) throw new EventDecodeError('missing-item', 'item is empty');
  return item;
}

function validateOptions(options: CodecOptions): void {
  const max = options.maxMessageBytes;
  if (max !== undefined && !(Number.isInteger(max) && max > 0)) {
    throw new PmeError('PME_ERR_CONFIG_INVALID', `maxMessageBytes must be a positive integer, got ${max}`);
  }
}

async function registerWriter(options: CodecOptions, schema: Schema, topic: string): Promise<number> {
  if (!options.registry || options.register !== true) return -1;
  const subject = options.subject ?? `${options.topic ?? topic}-value`;
  return options.registry.register(subject, schema);
}

/** A codec for `pme.Interaction`; with a registry and `register: true`, registers the writer schema first. */
export async function createInteractionCodec(options: CodecOptions = {}): Promise<AvroCodec<Interaction>> {
  validateOptions(options);
  const id = await registerWriter(options, INTERACTION_SCHEMA, 'interactions');
  return new AvroCodec<Interaction>(INTERACTION_SCHEMA, validateInteraction, undefined, options, id);
}

/**
 * A codec for `pme.Item`. A tombstone (null value) with a key decodes as that item, inactive:
 * on a compacted topic that is how an item is deleted.
 */
export async function createItemCodec(options: CodecOptions = {}): Promise<AvroCodec<CatalogItem>> {
  validateOptions(options);
  const id = await registerWriter(options, ITEM_SCHEMA, 'items');
  return new AvroCodec<CatalogItem>(
    ITEM_SCHEMA,
    validateItem,
    (item) => ({ item, fields: {}, active: false }),
    options,
    id,
  );
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
