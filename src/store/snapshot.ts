/**
 * Snapshot files of the store (plus the engine's own arrays), written atomically.
 *
 * Layout (little-endian):
 *   "PMESTORE" | u32 format version | u32 header length | header JSON | pad to 8
 *   sections, each starting at a multiple of 8 (so they can be viewed as typed arrays in place)
 *   sha-256 of everything before it (32 bytes) | "PMESEND\n"
 * The end marker tells a truncated file from a corrupt one; the digest catches any flipped byte.
 * Files are named store-<12-digit sequence>.pme; the newest two are kept. A write goes to
 * .store-<sequence>.<pid>.<ms>.tmp first; removeStaleTemps removes those a dead process left.
 */
import { createHash } from 'node:crypto';
import { type FileHandle, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join, resolve } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { isPmeError, PmeError } from '../errors.js';
import { ByteWriter } from '../util/bytes.js';
import type { StoreOptions } from './options.js';
import { EmbeddingStore, type StoreState } from './store.js';

const MAGIC = Buffer.from('PMESTORE', 'latin1');
const END = Buffer.from('PMESEND\n', 'latin1');
const FORMAT_VERSION = 1;
const DIGEST_BYTES = 32;
const TRAILER_BYTES = DIGEST_BYTES + END.length;
const PREAMBLE_BYTES = MAGIC.length + 8;
const NAME = /^store-(\d{12})\.pme$/;
/** A write's temporary file: sequence, the writer's pid, Date.now() when it was opened. */
const TEMP = /^\.store-\d+\.(\d+)\.(\d+)\.tmp$/;
/** Snapshots kept in a directory: the newest and the one before it, in case the newest is damaged. */
const KEEP = 2;

type Dtype = 'u8' | 'i32' | 'f32' | 'f64';
const CTORS = { u8: Uint8Array, i32: Int32Array, f32: Float32Array, f64: Float64Array } as const;

interface SectionInfo {
  name: string;
  dtype: Dtype;
  offset: number;
  byteLength: number;
}

interface Header {
  format: 'pme-store';
  options: StoreState['options'];
  created: number;
  idLimit: number;
  idCapacity: number;
  keyMap?: { capacity: number; deleted: number };
  tiers: Array<{ count: number; capacity: number; head: number; tail: number; importance: boolean }>;
  sections: SectionInfo[];
  extra: string[];
}

export interface SnapshotInfo {
  path: string;
  sequence: number;
}

/** What `readSnapshot` returns. */
export interface ReadSnapshotResult {
  store: EmbeddingStore;
  /** The `extra` arrays given to `writeSnapshot`, as bytes (8-byte aligned copies: view them as
   *  Float32Array with `new Float32Array(u8.buffer, u8.byteOffset, u8.byteLength / 4)`). */
  extra: Record<string, Uint8Array>;
  /** The file the store was read from. */
  path: string;
  /** Newer snapshots that were unusable, with why (the caller should log them). */
  skipped: Array<{ path: string; error: PmeError }>;
}

/** The names in `dir` (none when it does not exist). */
async function namesIn(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** Snapshots in `dir`, newest first (an absent directory has none). */
export async function listSnapshots(dir: string): Promise<SnapshotInfo[]> {
  const names = await namesIn(dir);
  const out: SnapshotInfo[] = [];
  for (const name of names) {
    const m = NAME.exec(name);
    if (m) out.push({ path: join(dir, name), sequence: Number(m[1]) });
  }
  return out.sort((a, b) => b.sequence - a.sequence);
}

/** Writers per directory (resolved path), chained so two snapshots of one process never race for
 *  a sequence number, and removeStaleTemps never runs alongside a write of this process. */
const writers = new Map<string, Promise<unknown>>();

/** Runs `work` on `dir` once this process's earlier writes (and removals) there have settled. */
function chained<T>(dir: string, work: () => Promise<T>): Promise<T> {
  const key = resolve(dir);
  const previous = writers.get(key) ?? Promise.resolve();
  const run = previous.catch(() => undefined).then(work);
  writers.set(key, run);
  void run
    .finally(() => {
      if (writers.get(key) === run) writers.delete(key);
    })
    .catch(() => undefined);
  return run;
}

/**
 * Removes the temporary files that writes of dead processes left in `dir` (a kill -9 or a crash
 * between open and rename: no later write reuses the name, so nothing else would), and returns
 * their paths. Such a file is never a snapshot (readSnapshot does not look at it). Left alone:
 * - this process's files from since it started: a write of its own may be under way (the removal
 *   also waits for this process's writes to `dir` to end, so normally there is none);
 * - files of another process that is alive (kill(pid, 0)): two processes on one state directory
 *   are not supported, but one's write is not the other's to break. A dead writer's pid taken
 *   since by an unrelated process leaves its file for a later start.
 * This process's own pid with a time before it started is a predecessor's: a container's restarted
 * process usually gets the same pid. A file that cannot be removed is left (not an error).
 */
export function removeStaleTemps(dir: string): Promise<string[]> {
  return chained(dir, async () => {
    const names = await namesIn(dir);
    const started = performance.timeOrigin;
    const removed: string[] = [];
    for (const name of names) {
      const m = TEMP.exec(name);
      if (m === null) continue;
      const pid = Number(m[1]);
      const openedAt = Number(m[2]);
      const stale = pid === process.pid ? openedAt < started : !alive(pid);
      if (!stale) continue;
      const path = join(dir, name);
      try {
        await rm(path);
        removed.push(path);
      } catch {
        // Gone meanwhile, or not ours to remove (a directory, no permission): left.
      }
    }
    return removed;
  });
}

/** Whether a process with this pid exists (one of another user's counts: EPERM). */
function alive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return true; // not a name writeSnapshot makes: left
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Writes the store (and `extra`) to a new snapshot in `dir` and returns its path. Atomic: the bytes go
 * to a temporary file that is fsynced, then renamed, then the directory is fsynced; a crash leaves
 * either the old set of snapshots or the new one. Keeps the newest two snapshots.
 * Consistency: the state is copied synchronously when the write starts (before the first `await`), so
 * the store may keep training while the file is written; the copy briefly doubles the store's memory.
 * `extra` is written as given, not copied: pass arrays that nobody changes afterwards.
 */
export function writeSnapshot(
  store: EmbeddingStore,
  dir: string,
  extra: Record<string, Uint8Array | Float32Array> = {},
): Promise<string> {
  return writeStoreCopy(copyStore(store), dir, extra);
}

/** writeSnapshot of a state already copied (by copyStore or copyStoreInSlices). */
export function writeStoreCopy(
  state: StoreState,
  dir: string,
  extra: Record<string, Uint8Array | Float32Array> = {},
): Promise<string> {
  const bytes: Record<string, Uint8Array> = {};
  for (const [name, data] of Object.entries(extra))
    bytes[name] = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return chained(dir, () => write(state, dir, bytes));
}

/** Bytes hashed and written per step of a snapshot write (~1 ms of SHA-256). */
const WRITE_SLICE_BYTES = 1 << 20;

type Copyable = Uint8Array | Int32Array | Float32Array | Float64Array;

/** The store's state, copied at once. */
export function copyStore(store: EmbeddingStore): StoreState {
  return copiedState(store.exportState(), (a) => a.slice() as typeof a);
}

/** Bytes copied between two turns of copyStoreInSlices. */
const COPY_SLICE_BYTES = 1 << 20;

/**
 * The store's state, copied in steps of about COPY_SLICE_BYTES with a macrotask turn between them,
 * so that requests served on this thread go on: at once, 1,000,000 tokens (336 MB) took
 * 108–168 ms here. The caller keeps the store from changing until this resolves (the service holds
 * its state lock and watches prune windows): rows copied at different moments are no state at all.
 */
export async function copyStoreInSlices(store: EmbeddingStore): Promise<StoreState> {
  const s = store.exportState();
  const sources: Copyable[] = [];
  copiedState(s, (a) => {
    sources.push(a);
    return a;
  });
  // Each array allocated just before it is filled: hundreds of MB allocated at once is external
  // memory that V8 answers with full collections on the spot (~25 ms each at 1M tokens).
  const copies = new Map<Copyable, Copyable>();
  let sinceTurn = 0;
  for (const from of sources) {
    const to = new (from.constructor as new (n: number) => Float32Array)(from.length);
    const step = Math.floor(COPY_SLICE_BYTES / from.BYTES_PER_ELEMENT);
    for (let at = 0; at < from.length; at += step) {
      if (sinceTurn >= COPY_SLICE_BYTES) {
        await nextTurn();
        sinceTurn = 0;
      }
      const end = Math.min(from.length, at + step);
      to.set((from as Float32Array).subarray(at, end), at);
      sinceTurn += (end - at) * from.BYTES_PER_ELEMENT;
    }
    copies.set(from, to);
  }
  return copiedState(s, (a) => copies.get(a) as typeof a);
}

/** `s` with each of its arrays passed through `copy` (exportState's `keys` is its own already). */
function copiedState(s: StoreState, copy: <T extends Copyable>(a: T) => T): StoreState {
  return {
    ...s,
    freeIds: copy(s.freeIds),
    tierOf: copy(s.tierOf),
    slotOf: copy(s.slotOf),
    linear: copy(s.linear),
    linearOptimizer: copy(s.linearOptimizer),
    lastSeen: copy(s.lastSeen),
    frequency: copy(s.frequency),
    prev: copy(s.prev),
    next: copy(s.next),
    evicted:
      s.evicted === undefined
        ? undefined
        : {
            fingerprint: copy(s.evicted.fingerprint),
            linear: copy(s.evicted.linear),
            optimizer: copy(s.evicted.optimizer),
          },
    tiers: s.tiers.map((t) => ({
      ...t,
      ids: copy(t.ids),
      params: copy(t.params),
      optimizer: copy(t.optimizer),
      importance: t.importance === null ? null : copy(t.importance),
    })),
  };
}

async function write(state: StoreState, dir: string, extra: Record<string, Uint8Array>): Promise<string> {
  if (endianness() !== 'LE')
    throw new PmeError('PME_ERR_CONFIG_INVALID', 'snapshots need a little-endian CPU');
  const chunks: Array<{ name: string; dtype: Dtype; data: ArrayBufferView }> = [
    { name: 'keys', dtype: 'u8', data: await keysJson(state.keys) },
    { name: 'freeIds', dtype: 'i32', data: state.freeIds },
    { name: 'tierOf', dtype: 'u8', data: state.tierOf },
    { name: 'slotOf', dtype: 'i32', data: state.slotOf },
    { name: 'linear', dtype: 'f32', data: state.linear },
    { name: 'linearOptimizer', dtype: 'f32', data: state.linearOptimizer },
    { name: 'lastSeen', dtype: 'f64', data: state.lastSeen },
    { name: 'frequency', dtype: 'f32', data: state.frequency },
    { name: 'prev', dtype: 'i32', data: state.prev },
    { name: 'next', dtype: 'i32', data: state.next },
  ];
  if (state.evicted !== undefined) {
    chunks.push({ name: 'evicted.fingerprint', dtype: 'u8', data: state.evicted.fingerprint });
    chunks.push({ name: 'evicted.linear', dtype: 'f32', data: state.evicted.linear });
    chunks.push({ name: 'evicted.optimizer', dtype: 'f32', data: state.evicted.optimizer });
  }
  state.tiers.forEach((t, i) => {
    chunks.push({ name: `tier${i}.ids`, dtype: 'i32', data: t.ids });
    chunks.push({ name: `tier${i}.params`, dtype: 'f32', data: t.params });
    chunks.push({ name: `tier${i}.optimizer`, dtype: 'f32', data: t.optimizer });
    if (t.importance !== null) chunks.push({ name: `tier${i}.importance`, dtype: 'f32', data: t.importance });
  });
  const extraNames = Object.keys(extra);
  for (const name of extraNames) chunks.push({ name: `extra.${name}`, dtype: 'u8', data: extra[name] });

  let offset = 0;
  const sections: SectionInfo[] = chunks.map((c) => {
    const info = { name: c.name, dtype: c.dtype, offset, byteLength: c.data.byteLength };
    offset = align8(offset + c.data.byteLength);
    return info;
  });
  const header: Header = {
    format: 'pme-store',
    options: state.options,
    created: state.created,
    idLimit: state.idLimit,
    idCapacity: state.idCapacity,
    keyMap: state.keyMap,
    tiers: state.tiers.map((t) => ({
      count: t.count,
      capacity: t.capacity,
      head: t.head,
      tail: t.tail,
      importance: t.importance !== null,
    })),
    sections,
    extra: extraNames,
  };
  // JSON has no Infinity: budget and TTL travel as null.
  const headerBytes = Buffer.from(
    JSON.stringify(header, (_k, v) => (v === Number.POSITIVE_INFINITY ? null : v)),
  );
  const preamble = Buffer.alloc(PREAMBLE_BYTES);
  MAGIC.copy(preamble, 0);
  preamble.writeUInt32LE(FORMAT_VERSION, MAGIC.length);
  preamble.writeUInt32LE(headerBytes.length, MAGIC.length + 4);

  const sequence = ((await listSnapshots(dir))[0]?.sequence ?? 0) + 1;
  const finalPath = join(dir, `store-${String(sequence).padStart(12, '0')}.pme`);
  const tmpPath = join(dir, `.store-${sequence}.${process.pid}.${Date.now()}.tmp`);
  const hash = createHash('sha256');
  const fh = await open(tmpPath, 'wx');
  try {
    // Hashed and written a slice at a time: the hash runs on this thread, and a tier of tens of MB
    // hashed at once would hold requests served here for as many ms.
    const put = async (data: ArrayBufferView): Promise<void> => {
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      for (let at = 0; at < bytes.length; at += WRITE_SLICE_BYTES) {
        const slice = bytes.subarray(at, at + WRITE_SLICE_BYTES);
        hash.update(slice);
        await writeAll(fh, slice);
      }
    };
    await put(preamble);
    await put(headerBytes);
    await put(padding(PREAMBLE_BYTES + headerBytes.length));
    for (const c of chunks) {
      await put(c.data);
      await put(padding(c.data.byteLength));
    }
    await writeAll(fh, hash.digest());
    await writeAll(fh, END);
    await fh.sync();
  } catch (error) {
    await fh.close().catch(() => undefined);
    await rm(tmpPath, { force: true });
    throw error;
  }
  await fh.close();
  await rename(tmpPath, finalPath);
  await syncDir(dir);
  const all = await listSnapshots(dir);
  for (const old of all.slice(KEEP)) await rm(old.path, { force: true });
  return finalPath;
}

/**
 * Reads the newest usable snapshot in `dir`. A damaged newer file (corrupt, truncated, foreign) is
 * skipped and reported in `skipped`; the previous snapshot is used. Throws PmeError
 * PME_ERR_SNAPSHOT_CORRUPT when every snapshot is unusable, PME_ERR_NOT_FOUND when there is none.
 * `overrides` sets what a file cannot hold (the clock) or what may change on restart (budget, TTL).
 */
export async function readSnapshot(
  dir: string,
  overrides: Partial<StoreOptions> = {},
): Promise<ReadSnapshotResult> {
  const all = await listSnapshots(dir);
  if (all.length === 0) throw new PmeError('PME_ERR_NOT_FOUND', `store snapshot in ${dir}`);
  const skipped: ReadSnapshotResult['skipped'] = [];
  for (const { path } of all) {
    try {
      const { store, extra } = await readSnapshotFile(path, overrides);
      return { store, extra, path, skipped };
    } catch (error) {
      if (!isPmeError(error, 'PME_ERR_SNAPSHOT_CORRUPT')) throw error;
      skipped.push({ path, error });
    }
  }
  const newest = skipped[0].error;
  if (skipped.length === 1) throw newest;
  throw new PmeError(
    'PME_ERR_SNAPSHOT_CORRUPT',
    `${dir} (all ${skipped.length})`,
    skipped.map((s) => s.error.message).join('; '),
  );
}

/** Reads one snapshot file; any damage is PmeError PME_ERR_SNAPSHOT_CORRUPT. */
export async function readSnapshotFile(
  path: string,
  overrides: Partial<StoreOptions> = {},
): Promise<{ store: EmbeddingStore; extra: Record<string, Uint8Array> }> {
  const bad = (why: string): never => {
    throw new PmeError('PME_ERR_SNAPSHOT_CORRUPT', path, why);
  };
  if (endianness() !== 'LE')
    throw new PmeError('PME_ERR_CONFIG_INVALID', 'snapshots need a little-endian CPU');
  const size = (await stat(path)).size;
  if (size < MAGIC.length) bad(`${size} bytes is too short to be a store snapshot`);
  // Offset 0 in a fresh buffer: every section (8-aligned in the file) is aligned in memory too.
  const bytes = new Uint8Array(size);
  const fh = await open(path, 'r');
  try {
    let done = 0;
    while (done < size) {
      const { bytesRead } = await fh.read(bytes, done, size - done, done);
      if (bytesRead === 0) bad('file shrank while being read');
      done += bytesRead;
    }
  } finally {
    await fh.close();
  }
  const buf = Buffer.from(bytes.buffer, 0, size);
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) bad('not a PME store snapshot (bad magic bytes)');
  if (size < PREAMBLE_BYTES + TRAILER_BYTES || !buf.subarray(size - END.length).equals(END)) {
    bad('truncated (no end marker)');
  }
  const version = buf.readUInt32LE(MAGIC.length);
  if (version !== FORMAT_VERSION) bad(`format version ${version}, this build reads ${FORMAT_VERSION}`);
  const bodyEnd = size - TRAILER_BYTES;
  const digest = createHash('sha256').update(buf.subarray(0, bodyEnd)).digest();
  if (!digest.equals(buf.subarray(bodyEnd, bodyEnd + DIGEST_BYTES))) bad('checksum mismatch (corrupt)');

  const headerLength = buf.readUInt32LE(MAGIC.length + 4);
  if (PREAMBLE_BYTES + headerLength > bodyEnd) bad('header runs past the end');
  let header: Header;
  try {
    header = JSON.parse(buf.toString('utf8', PREAMBLE_BYTES, PREAMBLE_BYTES + headerLength));
  } catch {
    return bad('header is not JSON');
  }
  if (header?.format !== 'pme-store' || !Array.isArray(header.sections) || !Array.isArray(header.tiers)) {
    bad('header is not a store header');
  }
  const dataStart = align8(PREAMBLE_BYTES + headerLength);
  const found = new Map<string, ArrayBufferView>();
  for (const s of header.sections) {
    const ctor = CTORS[s.dtype];
    const start = dataStart + s.offset;
    if (
      ctor === undefined ||
      !(Number.isInteger(s.offset) && Number.isInteger(s.byteLength)) ||
      s.offset % 8 !== 0 ||
      s.byteLength % ctor.BYTES_PER_ELEMENT !== 0 ||
      s.offset < 0 ||
      start + s.byteLength > bodyEnd
    ) {
      bad(`section ${s.name} is out of bounds`);
    }
    found.set(s.name, new ctor(bytes.buffer, start, s.byteLength / ctor.BYTES_PER_ELEMENT));
  }
  const section = <T extends ArrayBufferView>(name: string, ctor: new (...args: never[]) => T): T => {
    const v = found.get(name);
    if (!(v instanceof ctor)) return bad(`section ${name} is missing`);
    return v;
  };
  let keys: string[];
  try {
    keys = JSON.parse(Buffer.from(section('keys', Uint8Array)).toString('utf8'));
  } catch {
    return bad('keys are not JSON');
  }
  if (!Array.isArray(keys)) bad('keys are not an array');
  const options = { ...header.options };
  // Infinity travelled as null.
  if (options.budgetBytes === null) options.budgetBytes = Number.POSITIVE_INFINITY;
  if (options.ttlMs === null) options.ttlMs = Number.POSITIVE_INFINITY;
  // Written before the linear weights had a slot count of their own: they had the rows'.
  options.linearOptimizerSlots ??= options.optimizerSlots;
  const state: StoreState = {
    options,
    created: header.created,
    idLimit: header.idLimit,
    idCapacity: header.idCapacity,
    keyMap: header.keyMap,
    keys,
    freeIds: section('freeIds', Int32Array),
    tierOf: section('tierOf', Uint8Array),
    slotOf: section('slotOf', Int32Array),
    linear: section('linear', Float32Array),
    linearOptimizer: section('linearOptimizer', Float32Array),
    lastSeen: section('lastSeen', Float64Array),
    frequency: section('frequency', Float32Array),
    prev: section('prev', Int32Array),
    next: section('next', Int32Array),
    evicted: found.has('evicted.fingerprint')
      ? {
          fingerprint: section('evicted.fingerprint', Uint8Array),
          linear: section('evicted.linear', Float32Array),
          optimizer: section('evicted.optimizer', Float32Array),
        }
      : undefined,
    tiers: header.tiers.map((t, i) => ({
      count: t.count,
      capacity: t.capacity,
      head: t.head,
      tail: t.tail,
      ids: section(`tier${i}.ids`, Int32Array),
      params: section(`tier${i}.params`, Float32Array),
      optimizer: section(`tier${i}.optimizer`, Float32Array),
      importance: t.importance ? section(`tier${i}.importance`, Float32Array) : null,
    })),
  };
  const store = EmbeddingStore.fromState(state, overrides, path);
  const extra: Record<string, Uint8Array> = {};
  for (const name of Array.isArray(header.extra) ? header.extra : []) {
    extra[name] = section(`extra.${name}`, Uint8Array).slice();
  }
  return { store, extra };
}

function align8(n: number): number {
  return Math.ceil(n / 8) * 8; // not `& ~7`: files may pass 2 GiB
}

const ZEROS = new Uint8Array(8);
function padding(length: number): Uint8Array {
  return ZEROS.subarray(0, align8(length) - length);
}

/** Keys encoded per step of a snapshot write (JSON.stringify of 1,000,000 keys at once: ~40–60 ms;
 *  16,384 keys per step took up to 2.6 ms, a 100,000-item catalog's store on this machine). */
const KEYS_PER_STEP = 4096;

/** JSON.stringify(keys) as UTF-8, in steps with a macrotask turn between them (the same text). */
async function keysJson(keys: readonly (string | null)[]): Promise<Uint8Array> {
  const out = new ByteWriter(16 * keys.length + 2);
  out.write('[');
  for (let at = 0; at < keys.length; at += KEYS_PER_STEP) {
    if (at > 0) {
      await nextTurn();
      out.write(',');
    }
    out.write(JSON.stringify(keys.slice(at, at + KEYS_PER_STEP)).slice(1, -1));
  }
  out.write(']');
  return out.view();
}

async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done);
    done += bytesWritten;
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
