/**
 * Row initialisation from a counter-based generator: the values of the n-th row ever created are a
 * pure function of (seed, n). The store then needs to snapshot only the counter, and a restored store
 * creates exactly the rows the original would have (a stateful generator would need its state saved).
 */

function mix(x: number): number {
  // murmur3 fmix32: full avalanche, so consecutive counters give independent-looking words.
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Uniform in (0, 1) from (seed, row counter, word index). */
function uniform(seed: number, counter: number, word: number): number {
  const lo = counter >>> 0;
  const hi = Math.floor(counter / 4294967296) >>> 0;
  const h = mix(mix(mix(seed ^ 0x9e3779b9) ^ lo) + Math.imul(hi, 0x27d4eb2d) + Math.imul(word, 0x165667b1));
  return (h + 0.5) / 4294967296;
}

/** Writes `len` normal(0, std) values at dst[offset..] for row number `counter` (Box-Muller pairs). */
export function fillNormalRow(
  dst: Float32Array,
  offset: number,
  len: number,
  std: number,
  seed: number,
  counter: number,
): void {
  if (std === 0) {
    dst.fill(0, offset, offset + len);
    return;
  }
  for (let j = 0; j < len; j += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform(seed, counter, j))) * std;
    const theta = 2 * Math.PI * uniform(seed, counter, j + 1);
    dst[offset + j] = r * Math.cos(theta);
    if (j + 1 < len) dst[offset + j + 1] = r * Math.sin(theta);
  }
}
