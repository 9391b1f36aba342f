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
 * Inserts by lastSeen, walking from both ends in turn, one step each, until one finds the place.
 * The walk is capped at MAX_WALK steps an end so no touch or move costs O(tier): a token placed out
 * of time order further than that from both ends (a move of a middle-aged token) stops 64 tokens
 * from the head, and the list is then only nearly sorted: it is treated as more recent than it is,
 * so TTL or budget eviction reaches it a little later. With time-ordered touches the order is
 * exact. Only comparisons of times decide where a token goes, never their distances (choosing the
 * end "nearer in time" made evictions, and so what a run learns, depend on the machine's speed).
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
  // Insert after the last token seen later than x. The head is one (x < seen[head]).
  let after = t.tail;
  if (seen[after] <= x) {
    let fromHead = t.head;
    let fromTail = t.tail;
    after = -1;
    for (let steps = 0; steps < MAX_WALK && after === -1; steps++) {
      const n = next[fromHead];
      if (n === -1 || seen[n] <= x) after = fromHead;
      else fromHead = n;
      if (after === -1) {
        fromTail = prev[fromTail];
        if (seen[fromTail] > x) after = fromTail;
      }
    }
    if (after === -1) after = fromHead;
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
