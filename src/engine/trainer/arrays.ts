/**
 * Small typed-array helpers the trainer's parts share: growth by doubling (arrays indexed by item,
 * signature or field token grow with the catalog), the per-tier vector layout, and the dot product
 * of a row with a tier-space vector.
 */
import type { ModelStore } from '../model/model.js';

export function grownInt32(a: Int32Array<ArrayBuffer>, n: number, fill = 0): Int32Array<ArrayBuffer> {
  if (a.length >= n) return a;
  const b = new Int32Array(Math.max(n, a.length * 2));
  b.fill(fill);
  b.set(a);
  return b;
}

export function grownFloat64(a: Float64Array<ArrayBuffer>, n: number): Float64Array<ArrayBuffer> {
  if (a.length >= n) return a;
  const b = new Float64Array(Math.max(n, a.length * 2));
  b.set(a);
  return b;
}

export function grownUint8(a: Uint8Array<ArrayBuffer>, n: number): Uint8Array<ArrayBuffer> {
  if (a.length >= n) return a;
  const b = new Uint8Array(Math.max(n, a.length * 2));
  b.set(a);
  return b;
}

/** One vector per tier, each in the tier's own space, packed in a block of Σ sizes floats. */
export interface TierLayout {
  readonly sizes: Int32Array;
  readonly offsets: Int32Array;
  /** Σ sizes. */
  readonly block: number;
}

export function tierLayout(store: ModelStore): TierLayout {
  const sizes = Int32Array.from(store.tiers, (t) => t.size);
  const offsets = new Int32Array(sizes.length);
  let block = 0;
  for (let ti = 0; ti < sizes.length; ti++) {
    offsets[ti] = block;
    block += sizes[ti];
  }
  return { sizes, offsets, block };
}

/** e[eAt..eAt+s) · q[qAt..qAt+s); ladder sizes are even: 4-way unrolled, 1-wide tail. */
export function dot(e: Float32Array, eAt: number, q: Float64Array, qAt: number, s: number): number {
  let a0 = 0;
  let a1 = 0;
  let j = 0;
  for (; j + 4 <= s; j += 4) {
    a0 += e[eAt + j] * q[qAt + j] + e[eAt + j + 2] * q[qAt + j + 2];
    a1 += e[eAt + j + 1] * q[qAt + j + 1] + e[eAt + j + 3] * q[qAt + j + 3];
  }
  for (; j < s; j++) a0 += e[eAt + j] * q[qAt + j];
  return a0 + a1;
}
