/**
 * The Avro contract (namespace `pme`) and its codecs. Producers write the current schema and
 * name it in a `pme-schema` header (its fingerprint); readers resolve any known writer schema,
 * older or newer, to the current reader schema (fields added with defaults), so producers
 * and the service can be upgraded in any order. Bad input becomes a DecodeError whose reason
 * names the DLQ bucket.
 */
import avro from 'avsc';
import type { IHeaders } from 'kafkajs';
import type { CatalogItem, Interaction } from '../data/event.js';
import { DecodeError, type EventCodec } from './consumer.js';

/** Every version of `pme.Interaction` ever published, oldest first; the last is written. */
export const INTERACTION_SCHEMAS = [
  {
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
  },
] as const;

export const ITEM_SCHEMAS = [
  {
    type: 'record',
    name: 'Item',
    namespace: 'pme',
    fields: [
      { name: 'item', type: 'string' },
      { name: 'fields', type: { type: 'map', values: 'string' }, default: {} },
      { name: 'active', type: 'boolean', default: true },
    ],
  },
] as const;

export const SCHEMA_HEADER = 'pme-schema';

/** Reads records written with any known (or given) writer schema into the reader schema. */
class RecordCodec<T> {
  readonly reader: avro.Type;
  readonly fingerprint: string;
  readonly #resolvers = new Map<string, avro.Type>();
  readonly #resolved = new Map<string, ReturnType<avro.Type['createResolver']>>();

  constructor(schemas: readonly object[]) {
    // Timestamps stay plain numbers (ms): no Date objects per event.
    const types = schemas.map((schema) => avro.Type.forSchema(schema as avro.Schema));
    this.reader = types[types.length - 1];
    this.fingerprint = this.reader.fingerprint('sha256').toString('hex').slice(0, 16);
    for (const type of types) this.register(type);
  }

  /** Makes a writer schema known (e.g. one fetched from a registry, or a newer producer's). */
  register(writer: avro.Type): string {
    const id = writer.fingerprint('sha256').toString('hex').slice(0, 16);
    this.#resolvers.set(id, writer);
    if (id !== this.fingerprint) this.#resolved.set(id, this.reader.createResolver(writer));
    return id;
  }

  encode(record: T): Buffer {
    return this.reader.toBuffer(record);
  }

  decode(value: Buffer, headers: IHeaders | undefined): Record<string, unknown> {
    const header = headers?.[SCHEMA_HEADER];
    const id = header === undefined ? this.fingerprint : header.toString();
    if (!this.#resolvers.has(id)) throw new DecodeError('unknown-schema', `writer schema ${id} is not known`);
    try {
      const resolver = this.#resolved.get(id);
      return (
        resolver === undefined ? this.reader.fromBuffer(value) : this.reader.fromBuffer(value, resolver)
      ) as Record<string, unknown>;
    } catch (error) {
      throw new DecodeError('undecodable', `not a ${this.reader.name} record: ${(error as Error).message}`);
    }
  }
}

const interactions = new RecordCodec<Interaction>(INTERACTION_SCHEMAS);
const items = new RecordCodec<CatalogItem>(ITEM_SCHEMAS);

/** Makes a newer or older writer schema of `pme.Interaction` known; returns its header id. */
export function registerInteractionSchema(schema: object): string {
  return interactions.register(avro.Type.forSchema(schema as avro.Schema));
}

export function encodeInteractionMessage(event: Interaction): {
  key: string;
  value: Buffer;
  headers: IHeaders;
} {
  return {
    key: event.user,
    value: interactions.encode(event),
    headers: { [SCHEMA_HEADER]: interactions.fingerprint },
  };
}

export function encodeItemMessage(item: CatalogItem): { key: string; value: Buffer; headers: IHeaders } {
  return { key: item.item, value: items.encode(item), headers: { [SCHEMA_HEADER]: items.fingerprint } };
}

export function decodeInteraction(value: Buffer, headers: IHeaders | undefined): Interaction {
  const record = interactions.decode(value, headers);
  const user = record.user as string;
  const item = record.item as string;
  const label = record.label as number;
  if (user === '') throw new DecodeError('missing-user', 'user is empty');
  if (item === '') throw new DecodeError('missing-item', 'item is empty');
  if (!Number.isFinite(label)) throw new DecodeError('bad-label', `label is ${label}`);
  return {
    user,
    item,
    label,
    timestamp: Number(record.timestamp),
    fields: record.fields as Record<string, string>,
  };
}

export function decodeItem(value: Buffer, headers: IHeaders | undefined): CatalogItem {
  const record = items.decode(value, headers);
  if (record.item === '') throw new DecodeError('missing-item', 'item is empty');
  return record as unknown as CatalogItem;
}

export function createCodec(): EventCodec {
  return { decodeInteraction, decodeItem };
}
