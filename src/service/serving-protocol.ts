/**
 * Messages between the training thread (serving.ts) and the serving thread (serving-worker.ts).
 * A sync carries the trainer's changes as packs of the parameter topic's records
 * (src/stream/param-records.ts), one pack per message: its buffers are handed over, so posting
 * copies nothing and the serving thread receives four buffers instead of thousands of objects.
 */
import type { FmOptions } from '../engine/index.js';
import type { PackedRecords } from '../stream/index.js';

export interface ServingSetup {
  host: string;
  port: number;
  adminToken: string;
  ladder: number[];
  seed: number;
  itemRefreshMs: number;
  /** The trainer's crossUserItem: reads add the pair's cross weight. */
  crossUserItem: boolean;
  /** The trainer's model options that reads depend on. */
  model: Pick<FmOptions, 'maxTokens'>;
}

/** Methods the serving thread asks of the training thread: ServiceApi's, answered there. */
export type CallMethod =
  | 'startPrune'
  | 'pruneWindows'
  | 'tiers'
  | 'token'
  | 'readiness'
  | 'stats'
  | 'metrics'
  | 'subscriptions'
  | 'subscribe'
  | 'unsubscribe';

export type MainMessage =
  | {
      type: 'sync';
      seq: number;
      records: PackedRecords;
      recent: Array<{ user: string; item: string }>;
      /** The last message of one collect (a sync may come in several). */
      last: boolean;
    }
  | { type: 'reply'; id: number; value?: unknown; error?: { code: string; message: string } }
  | { type: 'stop' };

export type WorkerMessage =
  | { type: 'listening'; url: string }
  | { type: 'applied'; seq: number }
  | { type: 'call'; id: number; method: CallMethod; args: string[] }
  | { type: 'failed'; message: string };

/** The buffers a sync can hand over instead of copying. */
export function transferList(pack: PackedRecords): ArrayBuffer[] {
  return [pack.keys, pack.keyEnds, pack.lengths, pack.data].map((a) => a.buffer as ArrayBuffer);
}
