/**
 * LRU order of a tier: a doubly linked list over the store's shared prev/next columns, most recently
 * seen at `head`, lastSeen non-increasing from head to tail. No node objects: a token's links are two
 * ints in the columns.
 */
import type { TokenColumns, TokenId } from './columns.js';

/** The ends of one list (a tier). -1 when empty. */
export interface LruEnds {
  head: number;
  tail: number;
}

/** Longest walk when a token joins a list out of time order (see `linkSorted`). */
const MAX_WALK = 64;

export function unlink(t: LruEnds, c: TokenColumns, id: TokenId): void {
  const p = c.prev[id];
  const n = c.next[id];
  if (p === -1) t.head = n;
  else c.next[p] = n;
  if (n === -1) t.tail = p;
  else c.prev[n] = p;
  c.prev[id] = -1;
  c.next[id] = -1;
}

export function pushHead(t: LruEnds, c: TokenColumns, id: TokenId): void {
  c.prev[id] = -1;
  c.next[id] = t.head;
  if (t.head === -1) t.tail = id;
  else c.prev[t.head] = id;
  t.head = id;
}

/**
 * Inserts by lastSeen, walking from the end nearer in time. The walk is capped at MAX_WALK steps so
 * no touch or move costs O(tier): a token placed out of time order further than that (an event much
 * later than its neighbours, a move of a middle-aged token) stops there, and the list is then only
 * nearly sorted. The effect is bounded and safe: such a token is treated as more recent (or older) than
 * it is by at most the 64 tokens it skipped, i.e. TTL or budget eviction reaches it a little later
 * (or sooner). With time-ordered touches the order is exact.
 */
export function linkSorted(t: LruEnds, c: TokenColumns, id: TokenId): void {
  const seen = c.lastSeen;
  const x = seen[id];
  if (t.head === -1 || x >= seen[t.head]) {
    pushHead(t, c, id);
    return;
  }
  const prev = c.prev;
  const next = c.next;
  let after: number; // insert after this node
  let steps = 0;
  if (x < seen[t.tail]) {
    after = t.tail;
  } else if (x - seen[t.tail] < seen[t.head] - x) {
    after = t.tail;
    // Stops before the head at the latest: seen[head] > x.
    while (seen[after] <= x && steps++ < MAX_WALK) after = prev[after];
  } else {
    after = t.head;
    while (next[after] !== -1 && seen[next[after]] > x && steps++ < MAX_WALK) after = next[after];
  }
  const n = next[after];
  prev[id] = after;
  next[id] = n;
  next[after] = id;
  if (n === -1) t.tail = id;
  else prev[n] = id;
}

/** Marks `id` seen at `now` and moves it to its place: O(1) when time does not go backwards. */
export function touch(t: LruEnds, c: TokenColumns, id: TokenId, now: number): void {
  const lastSeen = c.lastSeen;
  lastSeen[id] = now;
  c.frequency[id] += 1;
  if (t.head === id) {
    const n = c.next[id];
    if (n === -1 || lastSeen[n] <= now) return;
  } else if (now >= lastSeen[t.head]) {
    unlink(t, c, id);
    pushHead(t, c, id);
    return;
  }
  unlink(t, c, id);
  linkSorted(t, c, id);
}
