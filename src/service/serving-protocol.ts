/**
 * Messages between the training thread (serving.ts) and the serving thread (serving-worker.ts).
 * A sync carries the trainer's changes as the replication records of src/engine/replication.ts,
 * packed into one transferable buffer so that posting it copies nothing and the serving thread
 * deserializes one array of keys instead of thousands of objects.
 */
import type { FmOptions, ParamRecord } from '../engine/index.js';

export interface ServingSetup {
  host: string;
  port: number;
  adminToken: string;
  ladder: number[];
  seed: number;
  itemRefreshMs: number;
  /** The trainer's model options that reads depend on. */
  model: Pick<FmOptions, 'maxTokens' | 'kernels'>;
}

export interface PackedRecords {
  keys: string[];
  /** Byte length of each value; -1 for a tombstone (null). Each value starts 4-byte aligned in
   *  `data`, so float rows are read in place. */
  lengths: Int32Array;
  data: Uint8Array;
}

const aligned = (n: number): number => (n + 3) & ~3;

/** Methods the serving thread asks of the training thread: ServiceApi's, answered there. */
export type CallMethod = 'startPrune' | 'pruneWindows' | 'tiers' | 'token' | 'readiness' | 'metrics';

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

export function packRecords(records: readonly ParamRecord[]): PackedRecords {
  const keys = new Array<string>(records.length);
  const lengths = new Int32Array(records.length);
  let total = 0;
  for (let i = 0; i < records.length; i++) {
    keys[i] = records[i].key;
    const value = records[i].value;
    lengths[i] = value === null ? -1 : value.byteLength;
    total += value === null ? 0 : aligned(value.byteLength);
  }
  const data = new Uint8Array(total);
  let at = 0;
  for (const { value } of records) {
    if (value === null) continue;
    data.set(value, at);
    at += aligned(value.byteLength);
  }
  return { keys, lengths, data };
}

export function unpackRecords(packed: PackedRecords): ParamRecord[] {
  const { keys, lengths, data } = packed;
  const records = new Array<ParamRecord>(keys.length);
  let at = 0;
  for (let i = 0; i < keys.length; i++) {
    const length = lengths[i];
    records[i] = {
      key: keys[i],
      value: length < 0 ? null : Buffer.from(data.buffer, data.byteOffset + at, length),
    };
    if (length > 0) at += aligned(length);
  }
  return records;
}

/** The buffers a sync can hand over instead of copying. */
export function transferList(packed: PackedRecords): ArrayBuffer[] {
  return [packed.lengths.buffer as ArrayBuffer, packed.data.buffer as ArrayBuffer];
}
