/**
 * The service's subscriptions: users' own topics of JSON or Avro records, each read through its
 * mapping (src/stream/json-mapping.ts) besides the interactions topic (kind `events`) or, for
 * the catalog, besides the items topic (kind `items`). Added and removed at runtime
 * (`/v1/subscriptions`), kept in the snapshot (its `subscriptions.json` section) so they survive
 * a restart, and added at start from `--subscriptions FILE`.
 *
 * A removed subscription's topic is no longer read; its offsets stay in the snapshot (harmless:
 * were it added again, what the state already holds would be skipped).
 */
import { readFile } from 'node:fs/promises';
import type { SubscribeResult } from '../api/contract.js';
import type { Trainer } from '../engine/index.js';
import { PmeError } from '../errors.js';
import {
  checkSubscription,
  compileItemSubscription,
  compileSubscription,
  DecodeError,
  MappingError,
  RegistryReader,
  type SchemaRegistryClient,
  type Source,
  type Subscription,
} from '../stream/index.js';

/** The snapshot section holding the list (JSON). */
export const SUBSCRIPTIONS_SECTION = 'subscriptions.json';

export interface SubscriptionHost {
  /** Topics no subscription may read: the service's own (interactions, items, parameters). */
  reserved: readonly string[];
  trainer: Trainer;
  /** Creates the topic (compacted: an items topic) and its DLQ when missing; true when it was created. */
  ensureTopic(topic: string, compacted: boolean): Promise<boolean>;
  /** Makes the consumer read exactly these sources (StreamConsumer.setSources). */
  apply(sources: Source[]): Promise<void>;
  /** Takes a snapshot, so that the list as changed is durable before the change is answered. */
  persist(): Promise<unknown>;
  /** The service's schema registry (`--schema-registry`), for subscriptions by subject. */
  registry: SchemaRegistryClient | null;
}

/** A subscription or a list of them that cannot be used: a 400 saying what is wrong. */
function badRequest(error: unknown, prefix = ''): PmeError {
  return new PmeError('PME_ERR_BAD_REQUEST', `${prefix}${error instanceof Error ? error.message : error}`);
}

/** The list in a snapshot's section, each checked; an unusable one is left out and reported. */
export function restoredSubscriptions(
  extra: Record<string, Uint8Array> | null,
  log: (line: string) => void,
): Subscription[] {
  const bytes = extra?.[SUBSCRIPTIONS_SECTION];
  if (bytes === undefined) return [];
  const out: Subscription[] = [];
  for (const value of JSON.parse(new TextDecoder().decode(bytes)) as unknown[]) {
    try {
      out.push(checkSubscription(value));
    } catch (error) {
      log(
        `pme: a restored subscription is unusable (${error instanceof Error ? error.message : error}); left out`,
      );
    }
  }
  return out;
}

/** `--subscriptions FILE`: a JSON array of subscriptions, each checked. */
export async function fileSubscriptions(path: string): Promise<Subscription[]> {
  let list: unknown;
  try {
    list = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `--subscriptions ${path}: ${error instanceof Error ? error.message : error}`,
    );
  }
  if (!Array.isArray(list))
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `--subscriptions ${path}: expected a JSON array of subscriptions`,
    );
  return list.map((value, i) => {
    try {
      return checkSubscription(value);
    } catch (error) {
      throw new PmeError(
        'PME_ERR_CONFIG_INVALID',
        `--subscriptions ${path}, entry ${i}: ${error instanceof Error ? error.message : error}`,
      );
    }
  });
}

export class Subscriptions {
  readonly #host: SubscriptionHost;
  /** By name, in the order added. */
  readonly #list = new Map<string, Subscription>();
  /** Changes run one at a time (a change waits for the consumer's swap and a snapshot). */
  #changing: Promise<unknown> = Promise.resolve();

  /** `initial`: restored ones merged with the file's by name (the file's replace them). */
  constructor(host: SubscriptionHost, initial: readonly Subscription[] = []) {
    this.#host = host;
    for (const s of initial) {
      this.#checkTopic(s, s.name);
      this.#list.set(s.name, s);
    }
  }

  list(): Subscription[] {
    return [...this.#list.values()];
  }

  /** What the consumer reads for the list: each topic decoded by its mapping, then admitted. */
  sources(): Source[] {
    const trainer = this.#host.trainer;
    return this.list().map((s): Source => {
      const reader = this.#bySubject(s);
      const common = {
        name: s.name,
        topic: s.topic,
        ...(reader === null ? {} : { prefetch: (values: Array<Buffer | null>) => reader.prefetch(values) }),
      };
      // The trainer's limits at the door, as for the service's own topics (admission.ts).
      if (s.kind === 'items') {
        const decode = compileItemSubscription(s, reader?.read);
        return {
          ...common,
          kind: 'items',
          decode: (value, _headers, key) => {
            const item = decode(value, key);
            const rejection = trainer.admitItem(item);
            if (rejection !== null) throw new DecodeError(rejection.reason, rejection.detail);
            return item;
          },
        };
      }
      const decode = compileSubscription(s, Date.now, reader?.read);
      return {
        ...common,
        decode: (value) => {
          const event = decode(value);
          const rejection = trainer.admit(event);
          if (rejection !== null) throw new DecodeError(rejection.reason, rejection.detail);
          return event;
        },
      };
    });
  }

  /** The reader of a subscription by subject (kept across swaps: it caches writer schemas). */
  readonly #readers = new Map<string, RegistryReader>();

  #bySubject(s: Subscription): RegistryReader | null {
    if (s.subject === undefined) return null;
    const registry = this.#host.registry;
    if (registry === null)
      throw new PmeError('PME_ERR_BAD_REQUEST', 'subject: a subscription by subject needs --schema-registry');
    let reader = this.#readers.get(s.name);
    if (reader === undefined) {
      reader = new RegistryReader(s, registry);
      this.#readers.set(s.name, reader);
    }
    return reader;
  }

  /** The snapshot section. */
  section(): Record<string, Uint8Array> {
    return { [SUBSCRIPTIONS_SECTION]: new TextEncoder().encode(JSON.stringify(this.list())) };
  }

  #checkTopic(s: Subscription, except: string): void {
    if (this.#host.reserved.includes(s.topic) || s.topic.endsWith('.dlq'))
      throw new PmeError('PME_ERR_BAD_REQUEST', `topic: ${s.topic} is one of the service's own topics`);
    for (const other of this.#list.values())
      if (other.topic === s.topic && other.name !== except)
        throw new PmeError(
          'PME_ERR_BAD_REQUEST',
          `topic: ${s.topic} is read by subscription ${other.name} already`,
        );
  }

  async #checkSubject(subject: string): Promise<void> {
    const registry = this.#host.registry;
    if (registry === null)
      throw new PmeError('PME_ERR_BAD_REQUEST', 'subject: a subscription by subject needs --schema-registry');
    if (!(await registry.hasSubject(subject)))
      throw new PmeError('PME_ERR_BAD_REQUEST', `subject: ${subject} is not in the schema registry`);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#changing.then(fn);
    this.#changing = next.catch(() => undefined);
    return next;
  }

  /**
   * Adds a subscription: checked (400 naming what is wrong), its topic created when missing, the
   * consumer reading it, the list in a snapshot; then answered.
   * @throws PmeError PME_ERR_BAD_REQUEST, PME_ERR_SUBSCRIPTION_EXISTS
   */
  add(value: unknown): Promise<SubscribeResult> {
    let s: Subscription;
    try {
      s = checkSubscription(value);
    } catch (error) {
      throw error instanceof MappingError ? badRequest(error) : error;
    }
    return this.#serial(async () => {
      if (this.#list.has(s.name)) throw new PmeError('PME_ERR_SUBSCRIPTION_EXISTS', s.name, s.name);
      this.#checkTopic(s, s.name);
      if (s.subject !== undefined) await this.#checkSubject(s.subject);
      const created = await this.#host.ensureTopic(s.topic, s.kind === 'items');
      this.#list.set(s.name, s);
      await this.#host.apply(this.sources());
      await this.#host.persist();
      return { ...s, created };
    });
  }

  /**
   * Removes a subscription: once this resolves, its topic is no longer read, and the snapshot
   * taken holds the list without it.
   * @throws PmeError PME_ERR_NOT_FOUND
   */
  remove(name: string): Promise<void> {
    return this.#serial(async () => {
      if (!this.#list.delete(name)) throw new PmeError('PME_ERR_NOT_FOUND', `subscription ${name}`);
      // One added again under this name may have another mapping or reader schema.
      this.#readers.delete(name);
      await this.#host.apply(this.sources());
      await this.#host.persist();
    });
  }
}
