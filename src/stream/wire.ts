/**
 * The Confluent wire format (what a schema registry's serializers read and write) and the small
 * registry client the codecs need: `[0x00][schema id: 4 bytes big-endian][Avro body]`.
 */
import type { Schema } from 'avsc';

/** The first byte of a framed value. */
export const MAGIC_BYTE = 0;
/** Magic byte plus the schema id. */
export const FRAME_HEADER_BYTES = 5;

/** `[0][id][body]` as one new buffer. */
export function frame(schemaId: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length);
  out[0] = MAGIC_BYTE;
  out.writeUInt32BE(schemaId, 1);
  body.copy(out, FRAME_HEADER_BYTES);
  return out;
}

/** The schema id of a framed value, or -1 when `value` is not in the wire format. */
export function framedSchemaId(value: Buffer): number {
  if (value.length < FRAME_HEADER_BYTES || value[0] !== MAGIC_BYTE) return -1;
  return value.readUInt32BE(1);
}

/** What the codecs need from a schema registry. */
export interface SchemaRegistryClient {
  /** Registers `schema` under `subject` (idempotent for an identical schema) and returns its id. */
  register(subject: string, schema: Schema): Promise<number>;
  /** The schema with this id; rejects when there is none. */
  getSchema(id: number): Promise<Schema>;
  /** Whether `subject` has a version in the registry. */
  hasSubject(subject: string): Promise<boolean>;
}

/** A registry held in memory, for tests and single-process setups. Ids start at 1. */
export class MemorySchemaRegistry implements SchemaRegistryClient {
  readonly #byId = new Map<number, Schema>();
  readonly #idByText = new Map<string, number>();
  readonly #subjects = new Map<string, number[]>();

  async register(subject: string, schema: Schema): Promise<number> {
    const text = JSON.stringify(schema);
    let id = this.#idByText.get(text);
    if (id === undefined) {
      id = this.#byId.size + 1;
      this.#byId.set(id, JSON.parse(text) as Schema);
      this.#idByText.set(text, id);
    }
    const versions = this.#subjects.get(subject) ?? [];
    if (!versions.includes(id)) versions.push(id);
    this.#subjects.set(subject, versions);
    return id;
  }

  async getSchema(id: number): Promise<Schema> {
    const schema = this.#byId.get(id);
    if (schema === undefined) throw new Error(`schema ${id} not found`);
    return schema;
  }

  async hasSubject(subject: string): Promise<boolean> {
    return this.versions(subject).length > 0;
  }

  /** Schema ids registered under `subject`, oldest first. */
  versions(subject: string): readonly number[] {
    return this.#subjects.get(subject) ?? [];
  }
}

/**
 * A client for the Confluent Schema Registry REST API (`POST /subjects/{s}/versions`,
 * `GET /schemas/ids/{id}`), over `fetch`. Schemas by id are immutable, so they are cached.
 */
export class HttpSchemaRegistry implements SchemaRegistryClient {
  readonly #url: string;
  readonly #headers: Record<string, string>;
  readonly #cache = new Map<number, Promise<Schema>>();

  /** @param url base URL, e.g. `http://localhost:8081`; `auth` is sent as the Authorization header. */
  constructor(url: string, auth?: string) {
    this.#url = url.replace(/\/+$/, '');
    this.#headers = { 'content-type': 'application/vnd.schemaregistry.v1+json' };
    if (auth) this.#headers.authorization = auth;
  }

  async register(subject: string, schema: Schema): Promise<number> {
    const response = await fetch(`${this.#url}/subjects/${encodeURIComponent(subject)}/versions`, {
      method: 'POST',
      headers: this.#headers,
      body: JSON.stringify({ schema: JSON.stringify(schema) }),
    });
    if (!response.ok) throw new Error(`schema registry: register ${subject}: HTTP ${response.status}`);
    return ((await response.json()) as { id: number }).id;
  }

  async hasSubject(subject: string): Promise<boolean> {
    const response = await fetch(`${this.#url}/subjects/${encodeURIComponent(subject)}/versions`, {
      headers: this.#headers,
    });
    if (response.status === 404) return false;
    if (!response.ok) throw new Error(`schema registry: subject ${subject}: HTTP ${response.status}`);
    return ((await response.json()) as unknown[]).length > 0;
  }

  getSchema(id: number): Promise<Schema> {
    let pending = this.#cache.get(id);
    if (pending === undefined) {
      pending = (async () => {
        const response = await fetch(`${this.#url}/schemas/ids/${id}`, { headers: this.#headers });
        if (!response.ok) throw new Error(`schema registry: schema ${id}: HTTP ${response.status}`);
        return JSON.parse(((await response.json()) as { schema: string }).schema) as Schema;
      })();
      // A failure (registry down) must not be remembered: the next batch retries.
      pending.catch(() => this.#cache.delete(id));
      this.#cache.set(id, pending);
    }
    return pending;
  }
}
