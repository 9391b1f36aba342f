/**
 * Subscriptions in JSON: a user's own topic of JSON records, read through a mapping that says
 * where the user, the item, the label, the time and extra fields are in each record. Pure: a
 * mapping is compiled (checked) once into a decoder, which throws the consumer's DecodeError with
 * a reason for a record that does not fit, so the consumer sends it to `<topic>.dlq`.
 *
 * PATH: dotted keys into the record (`user.id`, `ctx.device`); a key is letters, digits, `_`, `-`.
 * RULE (the label): a PATH to a number in [0, 1]; a comparison `PATH >= 4` (`> < <= == !=`) with
 * a number, or `PATH == "click"` / `!=` with a string; or the constant `1` or `0`. No eval.
 *
 * A subscription of kind `items` reads catalog records instead (item, fields, active), for the
 * catalog as the service's own items topic is read.
 */
import avro, { type Resolver, type Schema, type Type } from 'avsc';
import type { CatalogItem, Interaction } from '../data/event.js';
import { DecodeError } from './consumer.js';

export type TimestampUnit = 'ms' | 's' | 'iso';
export const TIMESTAMP_UNITS: readonly TimestampUnit[] = ['ms', 's', 'iso'];

export interface JsonMapping {
  user: string;
  item: string;
  label: string;
  timestamp?: { path: string; unit: TimestampUnit };
  fields?: Record<string, string>;
}

/** The mapping of an `items` subscription: where a catalog record's parts are. */
export interface ItemMapping {
  item: string;
  fields?: Record<string, string>;
  /** A PATH to a boolean (absent or null in a record: active), or a constant; default true. */
  active?: string | boolean;
}

export const SUBSCRIPTION_KINDS = ['events', 'items'] as const;

export interface Subscription {
  name: string;
  topic: string;
  /** `events` (the default): interactions to learn. `items`: catalog records (item, fields,
   *  active) for the catalog, as the service's items topic is read. */
  kind?: (typeof SUBSCRIPTION_KINDS)[number];
  /** `json`: each value a JSON object. `avro`: each value an Avro record of `schema` (yours). */
  format: 'json' | 'avro';
  mapping: JsonMapping | ItemMapping;
  /** format `avro`: the record schema the mapping reads (Avro JSON), its paths checked against it.
   *  Without `subject`, the values are written in it; with one, the reader schema each writer's
   *  values are resolved to (Avro schema resolution). */
  schema?: object;
  /** format `avro`: values in the Confluent wire format, each decoded by the writer schema its id
   *  names, fetched from the service's schema registry (`--schema-registry`); the subject must
   *  exist there. With `schema` too, each value is resolved to it. */
  subject?: string;
  /** format `avro`: `raw` (plain Avro binary, the default) or `confluent` (a magic byte and a
   *  4-byte schema id before it, as schema-registry serializers write; the id is not looked up:
   *  the values must be of `schema`). */
  wire?: 'raw' | 'confluent';
}

export const SUBSCRIPTION_FORMATS = ['json', 'avro'] as const;
const AVRO_WIRES = ['raw', 'confluent'] as const;

/** A subscription's name: letters, digits, `_`, `-`, `.`, at most 64, starting with a letter or digit. */
export const SUBSCRIPTION_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** A field name of a mapping (a token's `field=`): not `user` nor `item`. */
const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/;
const PATH_KEY = /^[A-Za-z0-9_-]+$/;
/** A Kafka topic name (its own rule). */
const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;

/** A mapping or subscription that cannot be used: `where` names the part (`mapping.label`). */
export class MappingError extends Error {
  constructor(
    readonly where: string,
    message: string,
  ) {
    super(`${where}: ${message}`);
  }
}

type Path = readonly string[];

function parsePath(where: string, text: unknown): Path {
  if (typeof text !== 'string' || text.trim() === '')
    throw new MappingError(where, 'a path is required (dotted keys, e.g. "user.id")');
  const keys = text.trim().split('.');
  for (const key of keys)
    if (!PATH_KEY.test(key))
      throw new MappingError(
        where,
        `"${text}" is not a path: each dotted key is letters, digits, "_" or "-" (got "${key}")`,
      );
  return keys;
}

function at(record: unknown, path: Path): unknown {
  let value = record;
  for (const key of path) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/** A string id at `path`: strings as they are, finite numbers (and booleans) as text; else undefined. */
function idAt(record: unknown, path: Path): string | undefined {
  const value = at(record, path);
  if (typeof value === 'string') return value === '' ? undefined : value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'boolean') return String(value);
  return undefined;
}

type Label = (record: unknown) => number;
const OPERATORS = ['>=', '<=', '==', '!=', '>', '<'] as const;
type Operator = (typeof OPERATORS)[number];
const RULE = /^\s*([A-Za-z0-9_.-]+)\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$/;
const NUMBER = /^-?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

function compare(op: Operator, a: number | string, b: number | string): boolean {
  switch (op) {
    case '>=':
      return a >= b;
    case '<=':
      return a <= b;
    case '>':
      return a > b;
    case '<':
      return a < b;
    case '==':
      return a === b;
    case '!=':
      return a !== b;
  }
}

function parseLabel(where: string, rule: unknown): Label {
  if (typeof rule !== 'string' || rule.trim() === '')
    throw new MappingError(
      where,
      'a label rule is required: a path, "PATH >= 4", \'PATH == "click"\', 1 or 0',
    );
  const text = rule.trim();
  if (text === '1' || text === '0') {
    const constant = Number(text);
    return () => constant;
  }
  const m = RULE.exec(text);
  if (m === null) {
    if (/[<>=!"\s]/.test(text))
      throw new MappingError(
        where,
        `"${text}" does not parse: expected PATH, PATH OP NUMBER or PATH OP "STRING" with OP one of >= <= == != > <, or 1 or 0`,
      );
    const path = parsePath(where, text);
    return (record) => {
      const value = at(record, path);
      if (typeof value !== 'number' || !(value >= 0 && value <= 1))
        throw new DecodeError(
          'bad-label',
          `label at ${text} is ${JSON.stringify(value)}, not a number in [0, 1]`,
        );
      return value;
    };
  }
  const [, pathText, op, operandText] = m as unknown as [string, string, Operator, string];
  const path = parsePath(where, pathText);
  if (operandText.startsWith('"')) {
    let operand: unknown;
    try {
      operand = JSON.parse(operandText);
    } catch {
      operand = undefined;
    }
    if (typeof operand !== 'string')
      throw new MappingError(where, `"${text}" does not parse: ${operandText} is not a quoted string`);
    if (op !== '==' && op !== '!=')
      throw new MappingError(where, `"${text}": a string compares with == or != only`);
    return (record) => {
      const value = at(record, path);
      if (typeof value !== 'string')
        throw new DecodeError('bad-label', `label at ${pathText} is ${JSON.stringify(value)}, not a string`);
      return compare(op, value, operand) ? 1 : 0;
    };
  }
  if (!NUMBER.test(operandText))
    throw new MappingError(
      where,
      `"${text}" does not parse: ${operandText} is neither a number nor a quoted string`,
    );
  const operand = Number(operandText);
  return (record) => {
    const value = at(record, path);
    if (typeof value !== 'number' || !Number.isFinite(value))
      throw new DecodeError('bad-label', `label at ${pathText} is ${JSON.stringify(value)}, not a number`);
    return compare(op, value, operand) ? 1 : 0;
  };
}

type Clock = () => number;

function parseTimestamp(where: string, spec: unknown): ((record: unknown, now: Clock) => number) | null {
  if (spec === undefined) return null;
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec))
    throw new MappingError(where, 'expected { "path": PATH, "unit": "ms" | "s" | "iso" }');
  const { path: pathText, unit, ...rest } = spec as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) throw new MappingError(where, `unknown key "${extra[0]}" (path, unit)`);
  const path = parsePath(`${where}.path`, pathText);
  if (!TIMESTAMP_UNITS.includes(unit as TimestampUnit))
    throw new MappingError(
      `${where}.unit`,
      `unknown unit ${JSON.stringify(unit)}: one of ${TIMESTAMP_UNITS.join(', ')}`,
    );
  const text = path.join('.');
  const bad = (value: unknown): DecodeError =>
    new DecodeError('mapping', `timestamp at ${text} is ${JSON.stringify(value)}, not a time in ${unit}`);
  return (record, now) => {
    const value = at(record, path);
    if (value === undefined || value === null) return now();
    let ms: number;
    if (unit === 'iso') {
      if (typeof value !== 'string') throw bad(value);
      ms = Date.parse(value);
    } else {
      const n = typeof value === 'string' && NUMBER.test(value) ? Number(value) : value;
      if (typeof n !== 'number') throw bad(value);
      ms = unit === 's' ? n * 1000 : n;
    }
    if (!Number.isFinite(ms) || ms < 0) throw bad(value);
    return Math.round(ms);
  };
}

/** Decodes one Kafka value (a JSON record) into an interaction, or throws DecodeError. */
export type JsonDecoder = (value: Buffer | null) => Interaction;

/**
 * Checks a mapping and compiles it into a decoder. Missing timestamps (no `timestamp` in the
 * mapping, or none in a record) take `now()`.
 * @throws MappingError naming the part that is wrong
 */
export function compileMapping(mapping: unknown, now: Clock = Date.now): JsonDecoder {
  const extract = compileExtraction(mapping, now);
  return (value) => extract(jsonRecord(present(value)));
}

/** Reads one Kafka value into the record a mapping walks, or throws DecodeError. */
export type ReadRecord = (value: Buffer) => object;

function present(value: Buffer | null): Buffer {
  if (value === null) throw new DecodeError('undecodable', 'the message has no value');
  return value;
}

const jsonRecord: ReadRecord = (value) => {
  let record: unknown;
  try {
    record = JSON.parse(value.toString('utf8'));
  } catch (error) {
    throw new DecodeError('undecodable', `not JSON: ${error instanceof Error ? error.message : error}`);
  }
  if (record === null || typeof record !== 'object' || Array.isArray(record))
    throw new DecodeError('undecodable', 'the JSON value is not an object');
  return record;
};

/** Field name -> path of a mapping's `fields`, checked. */
type Fields = Array<[string, Path, string]>;

function parseFields(value: unknown, reserved: readonly string[]): Fields {
  const fields: Fields = [];
  if (value === undefined) return fields;
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new MappingError('mapping.fields', 'expected an object { fieldName: PATH }');
  for (const [name, pathText] of Object.entries(value as Record<string, unknown>)) {
    if (!FIELD_NAME.test(name) || reserved.includes(name))
      throw new MappingError(
        `mapping.fields.${name}`,
        `a field name is a letter or "_" then letters, digits, "_" or "-" (at most 64), not ${reserved.join(' or ')}`,
      );
    fields.push([name, parsePath(`mapping.fields.${name}`, pathText), String(pathText)]);
  }
  return fields;
}

/** The fields of a record: absent ones left out; a value that is not a string or number throws. */
function readFields(record: object, fields: Fields): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, path, text] of fields) {
    const v = at(record, path);
    if (v === undefined || v === null) continue;
    const s = idAt(record, path);
    if (s === undefined)
      throw new DecodeError(
        'mapping',
        `field ${name} at ${text} is ${JSON.stringify(v)}, not a string or number`,
      );
    out[name] = s;
  }
  return out;
}

function checkKeys(m: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(m))
    if (!known.includes(key)) throw new MappingError(`mapping.${key}`, `unknown key (${known.join(', ')})`);
}

/** A checked mapping as the function that reads an interaction out of a decoded record. */
function compileExtraction(mapping: unknown, now: Clock): (record: object) => Interaction {
  if (mapping === null || typeof mapping !== 'object' || Array.isArray(mapping))
    throw new MappingError('mapping', 'expected an object with user, item and label');
  const m = mapping as Record<string, unknown>;
  checkKeys(m, ['user', 'item', 'label', 'timestamp', 'fields']);
  const user = parsePath('mapping.user', m.user);
  const item = parsePath('mapping.item', m.item);
  const label = parseLabel('mapping.label', m.label);
  const timestamp = parseTimestamp('mapping.timestamp', m.timestamp);
  const fields = parseFields(m.fields, ['user', 'item']);
  const userText = String(m.user);
  const itemText = String(m.item);
  const extract = (record: object): Interaction => {
    const u = idAt(record, user);
    if (u === undefined) throw new DecodeError('missing-user', `no user at ${userText}`);
    const i = idAt(record, item);
    if (i === undefined) throw new DecodeError('missing-item', `no item at ${itemText}`);
    return {
      user: u,
      item: i,
      label: label(record),
      timestamp: timestamp === null ? now() : timestamp(record, now),
      fields: readFields(record, fields),
    };
  };
  return extract;
}

/** A checked items mapping as the function that reads a catalog item out of a decoded record. */
function compileItemExtraction(mapping: unknown): (record: object) => CatalogItem {
  if (mapping === null || typeof mapping !== 'object' || Array.isArray(mapping))
    throw new MappingError('mapping', 'expected an object with item, and fields or active');
  const m = mapping as Record<string, unknown>;
  checkKeys(m, ['item', 'fields', 'active']);
  const item = parsePath('mapping.item', m.item);
  // Not `user` either: a catalog field's tokens join the item's events, beside the user's.
  const fields = parseFields(m.fields, ['user', 'item']);
  const itemText = String(m.item);
  let active: (record: object) => boolean = () => true;
  if (typeof m.active === 'boolean') {
    const constant = m.active;
    active = () => constant;
  } else if (m.active !== undefined) {
    if (typeof m.active !== 'string')
      throw new MappingError('mapping.active', 'expected a PATH to a boolean, or true or false');
    const path = parsePath('mapping.active', m.active);
    const text = m.active;
    active = (record) => {
      const value = at(record, path);
      // Absent, as the items topic's `active = true` default.
      if (value === undefined || value === null) return true;
      if (typeof value !== 'boolean')
        throw new DecodeError('mapping', `active at ${text} is ${JSON.stringify(value)}, not a boolean`);
      return value;
    };
  }
  return (record) => {
    const i = idAt(record, item);
    if (i === undefined) throw new DecodeError('missing-item', `no item at ${itemText}`);
    return { item: i, fields: readFields(record, fields), active: active(record) };
  };
}

/** Decodes one value of an `items` subscription into a catalog item, or throws DecodeError. */
export type ItemDecoder = (value: Buffer | null, key: Buffer | null) => CatalogItem;

/**
 * A decoder for a checked `items` subscription, reading its values with `read` (by default JSON
 * or Avro of its inline schema; a RegistryReader's for one by subject). A null value (a
 * tombstone) deactivates the item its key names, as on the service's items topic.
 */
export function compileItemSubscription(
  subscription: Subscription,
  read: ReadRecord = inlineReader(subscription),
): ItemDecoder {
  const extract = compileItemExtraction(subscription.mapping);
  return (value, key) => {
    if (value === null) {
      if (key === null || key.length === 0)
        throw new DecodeError('missing-item', 'a null value (tombstone) needs the item as its key');
      return { item: key.toString(), fields: {}, active: false };
    }
    return extract(read(value));
  };
}

/** The schema of an `avro` subscription, checked: a record schema avsc accepts. */
function avroType(schema: unknown): Type {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema))
    throw new MappingError(
      'schema',
      'format avro needs a record schema inline (Avro JSON), or a subject of the schema registry',
    );
  let type: Type;
  try {
    type = avro.Type.forSchema(schema as Schema);
  } catch (error) {
    throw new MappingError('schema', `not an Avro schema: ${error instanceof Error ? error.message : error}`);
  }
  if (type.typeName !== 'record')
    throw new MappingError('schema', `a record schema is needed, got ${type.typeName}`);
  return type;
}

/**
 * A decoder for a checked `events` subscription: JSON values, or Avro values of its schema,
 * through its mapping (the paths walk the decoded record the same way); `read` reads the values
 * of one by subject (a RegistryReader's).
 */
export function compileSubscription(
  subscription: Subscription,
  now: Clock = Date.now,
  read: ReadRecord = inlineReader(subscription),
): JsonDecoder {
  const extract = compileExtraction(subscription.mapping, now);
  return (value) => extract(read(present(value)));
}

/** How a subscription without a subject reads its values: JSON, or Avro of its inline schema. */
function inlineReader(subscription: Subscription): ReadRecord {
  if (subscription.format === 'json') return jsonRecord;
  if (subscription.subject !== undefined)
    throw new MappingError('subject', 'a subscription by subject is read through a RegistryReader');
  const type = avroType(subscription.schema);
  const skip = subscription.wire === 'confluent' ? 5 : 0;
  return (value) => {
    if (skip > 0) schemaId(value);
    return avroRecord(type, skip > 0 ? value.subarray(skip) : value, "the subscription's schema");
  };
}

/** `body` decoded as one whole record of `type` (written in the resolver's writer schema when
 *  given), or DecodeError `undecodable` naming `what`. */
function avroRecord(type: Type, body: Buffer, what: string, resolver?: Resolver): object {
  try {
    const { value, offset } = type.decode(body, 0, resolver);
    if (offset !== body.length)
      throw new Error(offset < 0 ? 'truncated' : `${body.length - offset} bytes left over`);
    return value as object;
  } catch (error) {
    throw new DecodeError(
      'undecodable',
      `not an Avro record of ${what}: ${error instanceof Error ? error.message : error}`,
    );
  }
}

/** Each path of a checked mapping, with where it is (`mapping.fields.device`). */
function mappingPaths(m: Record<string, unknown>): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const key of ['user', 'item'] as const)
    if (m[key] !== undefined) out.push([`mapping.${key}`, String(m[key])]);
  if (m.label !== undefined) {
    const label = String(m.label).trim();
    if (label !== '1' && label !== '0') out.push(['mapping.label', RULE.exec(label)?.[1] ?? label]);
  }
  if (typeof m.active === 'string') out.push(['mapping.active', m.active]);
  const timestamp = m.timestamp as { path: string } | undefined;
  if (timestamp !== undefined) out.push(['mapping.timestamp.path', timestamp.path]);
  for (const [name, path] of Object.entries((m.fields ?? {}) as Record<string, string>))
    out.push([`mapping.fields.${name}`, path]);
  return out;
}

/** Whether records of `type` can have a value at `path`: a record's field, any key of a map, or
 *  through a union, a branch that has it (a wrapped union's key is the branch name). */
function hasPath(type: Type, path: Path): boolean {
  if (path.length === 0) return true;
  const [key, ...rest] = path;
  if (type instanceof avro.types.RecordType) {
    const field = type.fields.find((f) => f.name === key);
    return field !== undefined && hasPath(field.type, rest);
  }
  if (type instanceof avro.types.MapType) return hasPath(type.valuesType as Type, rest);
  if (type instanceof avro.types.UnwrappedUnionType) return type.types.some((t) => hasPath(t, path));
  if (type instanceof avro.types.WrappedUnionType) {
    const branch = type.types.find((t) => t.branchName === key);
    return branch !== undefined && hasPath(branch, rest);
  }
  return false;
}

/** @throws MappingError naming the first path of the mapping that the schema lacks */
function checkPaths(type: Type, mapping: Record<string, unknown>): void {
  for (const [where, text] of mappingPaths(mapping))
    if (!hasPath(type, parsePath(where, text)))
      throw new MappingError(where, `"${text.trim()}" is not in the schema ${type.name ?? ''}`.trimEnd());
}

/** What a RegistryReader needs of a schema registry. */
export interface WriterSchemas {
  getSchema(id: number): Promise<Schema>;
}

/** How the values of one writer schema id are read: by the writer's type, or resolved to the
 *  reader's; a string says why they cannot be (the id unknown, or the writer incompatible). */
type WriterRead = { type: Type; resolver?: Resolver } | string;

/**
 * The values of an `avro` subscription by subject: each value in the Confluent wire format is
 * decoded by the writer schema its id names (fetched once per id, before the batch: prefetch),
 * and the mapping walks that record. Without a reader schema the paths are the writer's field names, so a writer
 * that adds or drops fields is read as it is (a path it lacks is missing, as in JSON); with one
 * (`schema`), every writer's values are resolved to it (added fields dropped, missing ones given
 * their defaults), and a writer that cannot be resolved to it sends its values to the DLQ as
 * `unknown-schema`.
 */
export class RegistryReader {
  readonly #registry: WriterSchemas;
  readonly #reader: Type | null;
  readonly #reads = new Map<number, WriterRead>();

  constructor(subscription: Subscription, registry: WriterSchemas) {
    this.#registry = registry;
    this.#reader = subscription.schema === undefined ? null : avroType(subscription.schema);
  }

  /** The record of one value, by the schema its id names (prefetched). */
  readonly read: ReadRecord = (value) => {
    const id = schemaId(value);
    const read = this.#reads.get(id) ?? `schema id ${id} is not in the schema registry`;
    if (typeof read === 'string') throw new DecodeError('unknown-schema', read);
    return avroRecord(read.type, value.subarray(5), `schema ${id}`, read.resolver);
  };

  #readOf(id: number, writer: Type): WriterRead {
    const reader = this.#reader;
    if (reader === null) return { type: writer };
    try {
      return { type: reader, resolver: reader.createResolver(writer) };
    } catch (error) {
      return `schema id ${id} cannot be resolved to the reader schema: ${error instanceof Error ? error.message : error}`;
    }
  }

  /** Fetches the writer schemas the values name that are not known yet. An id the registry does
   *  not have (404) is remembered as unknown; any other failure (the registry unreachable) throws,
   *  so that the batch is read again rather than sent to the DLQ. */
  async prefetch(values: Array<Buffer | null>): Promise<void> {
    for (const value of values) {
      let id: number;
      try {
        id = schemaId(value);
      } catch {
        continue; // decode says why
      }
      if (this.#reads.has(id)) continue;
      let writer: Type;
      try {
        writer = avro.Type.forSchema(await this.#registry.getSchema(id));
      } catch (error) {
        if (!/HTTP 404|not found/.test(error instanceof Error ? error.message : String(error))) throw error;
        this.#reads.set(id, `schema id ${id} is not in the schema registry`);
        continue;
      }
      this.#reads.set(id, this.#readOf(id, writer));
    }
  }
}

/** The schema id of a value in the Confluent wire format (magic byte 0, 4-byte big-endian id). */
function schemaId(value: Buffer | null): number {
  if (value === null) throw new DecodeError('undecodable', 'the message has no value');
  if (value.length < 5 || value[0] !== 0)
    throw new DecodeError('undecodable', 'not in the Confluent wire format (magic byte 0, schema id)');
  return value.readUInt32BE(1);
}

/**
 * Checks a whole subscription (name, topic, format, mapping) and returns it as given, typed.
 * @throws MappingError naming the part that is wrong
 */
export function checkSubscription(value: unknown): Subscription {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new MappingError('subscription', 'expected { name, topic, format, mapping }');
  const s = value as Record<string, unknown>;
  const keys = ['name', 'topic', 'kind', 'format', 'mapping', 'schema', 'subject', 'wire'];
  for (const key of Object.keys(s))
    if (!keys.includes(key)) throw new MappingError(key, `unknown key (${keys.join(', ')})`);
  if (typeof s.name !== 'string' || !SUBSCRIPTION_NAME.test(s.name))
    throw new MappingError(
      'name',
      `${JSON.stringify(s.name)} is not a name: letters, digits, "_", "-" or ".", at most 64, starting with a letter or digit`,
    );
  if (typeof s.topic !== 'string' || !TOPIC_NAME.test(s.topic) || s.topic === '.' || s.topic === '..')
    throw new MappingError('topic', `${JSON.stringify(s.topic)} is not a Kafka topic name`);
  if (s.kind !== undefined && !(SUBSCRIPTION_KINDS as readonly unknown[]).includes(s.kind))
    throw new MappingError(
      'kind',
      `unknown kind ${JSON.stringify(s.kind)} (expected one of: ${SUBSCRIPTION_KINDS.join(', ')})`,
    );
  if (!(SUBSCRIPTION_FORMATS as readonly unknown[]).includes(s.format))
    throw new MappingError(
      'format',
      `unknown format ${JSON.stringify(s.format)} (expected one of: ${SUBSCRIPTION_FORMATS.join(', ')})`,
    );
  if (s.format === 'avro' && s.subject !== undefined) {
    if (typeof s.subject !== 'string' || s.subject.trim() === '')
      throw new MappingError('subject', 'a schema registry subject is a non-empty string');
    if (s.wire !== undefined && s.wire !== 'confluent')
      throw new MappingError('wire', 'a subscription by subject reads the Confluent wire format');
  } else if (s.format === 'avro') {
    avroType(s.schema);
    if (s.wire !== undefined && !(AVRO_WIRES as readonly unknown[]).includes(s.wire))
      throw new MappingError(
        'wire',
        `unknown wire ${JSON.stringify(s.wire)} (expected one of: ${AVRO_WIRES.join(', ')})`,
      );
  } else if (s.schema !== undefined || s.subject !== undefined || s.wire !== undefined)
    throw new MappingError(
      s.schema !== undefined ? 'schema' : s.subject !== undefined ? 'subject' : 'wire',
      'only format avro takes a schema, a subject and a wire',
    );
  if (s.kind === 'items') compileItemExtraction(s.mapping);
  else compileExtraction(s.mapping, Date.now);
  // The paths must be in the schema the records are read as (a typo would send all to the DLQ).
  if (s.schema !== undefined) checkPaths(avroType(s.schema), s.mapping as Record<string, unknown>);
  return value as Subscription;
}
