/**
 * The FM's products in WebAssembly SIMD: the same as fm-kernels.ts (forward e · P_s, backward
 * P_s · dv with dP_s += e ⊗ dv, and fm-gram.ts' s × s ones, x G_s and M_s += w x yᵀ), several
 * dims per instruction. The module is built here from its opcodes (no toolchain, no binary blob):
 * five functions over a memory the projector allocates, holding every tier's P_s, dP_s, G_s and
 * M_s, the model's per-event V and S, and the scratch (row e, dv, row gradient). JS copies a row
 * in and reads its gradient back (s values each); the D-long work of a projected token (its vector
 * into V and S, its dv) runs in the kernels too: done in JavaScript it cost about as much as the
 * products of a small tier (a training epoch of MDE on ml-latest-small took 16% less CPU once
 * moved). The forward products (e · P_s, x G_s) run in double precision (f64x2), like the JS
 * ones, so scores agree with the read paths' double-precision sums (the read-path tests hold them
 * to 1e-9); the backward s × D products, gradients only, run in f32x4 (M_s in f64x2: it is G_s's
 * layout). A tier-mix step runs about 1.5x faster than in JavaScript (bench/train.ts, "tier mix").
 */
import { gramStride, initialProjection, type Projector } from './fm-kernels.js';

/**
 * The products in wasm SIMD, or null when the runtime cannot run the module or D is not a
 * multiple of 4. P_s, its gradient, G_s, M_s, V and S then live in the kernels' memory (whole
 * 64 KiB pages: two for D = 64, the default ladder and 64 tokens an event).
 */
export function createSimdProjector(
  sizes: readonly number[],
  D: number,
  maxTokens: number,
): Projector | null {
  const simd = createSimdKernels(sizes, D, maxTokens);
  return simd === null ? null : new SimdProjector(simd, sizes, D);
}

class SimdProjector implements Projector {
  readonly kind = 'wasm-simd';
  readonly projections: (Float32Array | null)[];
  readonly projectionGrads: (Float32Array | null)[];
  readonly grams: (Float64Array | null)[];
  readonly crosses: (Float64Array | null)[];
  readonly grad: Float32Array;
  readonly gradAt: number;
  readonly V: Float64Array;
  readonly S: Float64Array;
  readonly #simd: SimdKernels;
  readonly #D: number;

  constructor(simd: SimdKernels, sizes: readonly number[], D: number) {
    this.#simd = simd;
    this.#D = D;
    this.V = simd.f64.subarray(simd.vAt >> 3, (simd.vAt >> 3) + simd.maxTokens * D);
    this.S = simd.f64.subarray(simd.sAt >> 3, (simd.sAt >> 3) + D);
    const f = simd.f32;
    const view = (at: number, s: number) => f.subarray(at >> 2, (at >> 2) + s * D);
    this.projections = sizes.map((s, ti) =>
      simd.pAt[ti] < 0 ? null : initialProjection(view(simd.pAt[ti], s), s, D),
    );
    this.projectionGrads = sizes.map((s, ti) => (simd.dpAt[ti] < 0 ? null : view(simd.dpAt[ti], s)));
    const square = (at: number, s: number) =>
      at < 0 ? null : simd.f64.subarray(at >> 3, (at >> 3) + gramStride(s) ** 2);
    this.grams = sizes.map((s, ti) => square(simd.gAt[ti], s));
    this.crosses = sizes.map((s, ti) => square(simd.mAt[ti], s));
    this.grad = f;
    this.gradAt = simd.gradAt >> 2;
  }

  forward(e: Float32Array | Float64Array, off: number, s: number, ti: number, base: number): number {
    const simd = this.#simd;
    const f = simd.f64;
    const eAt = simd.eAt >> 3;
    for (let i = 0; i < s; i++) f[eAt + i] = e[off + i];
    return simd.project(simd.eAt, s, simd.pAt[ti], this.#D, simd.vAt + base * 8, simd.sAt);
  }

  backward(
    e: Float32Array | Float64Array,
    off: number,
    s: number,
    ti: number,
    g: number,
    base: number,
  ): void {
    const simd = this.#simd;
    const D = this.#D;
    const eAt = simd.eAt >> 3;
    simd.dvOf(simd.sAt, simd.vAt + base * 8, g, D, simd.dvAt);
    for (let i = 0; i < s; i++) simd.f64[eAt + i] = e[off + i];
    simd.backProject(simd.eAt, s, simd.pAt[ti], simd.dpAt[ti], D, simd.dvAt, simd.gradAt);
  }

  /** x[at .. at + s) to byte address `to`, zero-padded to the stride; returns the stride. */
  #load(x: Float64Array, at: number, s: number, to: number): number {
    const f = this.#simd.f64;
    const i0 = to >> 3;
    for (let i = 0; i < s; i++) f[i0 + i] = x[at + i];
    if ((s & 1) === 1) f[i0 + s] = 0;
    return s + (s & 1);
  }

  selfTerm(x: Float64Array, at: number, s: number, ti: number, u: Float64Array): number {
    const simd = this.#simd;
    const sp = this.#load(x, at, s, simd.eAt);
    const norm = simd.selfTerm(simd.eAt, sp, simd.gAt[ti], simd.outAt);
    const f = simd.f64;
    const uAt = simd.outAt >> 3;
    for (let j = 0; j < s; j++) u[at + j] = f[uAt + j];
    return norm;
  }

  addOuter(
    x: Float64Array,
    xAt: number,
    y: Float64Array,
    yAt: number,
    s: number,
    ti: number,
    w: number,
  ): void {
    const simd = this.#simd;
    this.#load(y, yAt, s, simd.outAt);
    simd.outer(simd.mAt[ti], simd.eAt, simd.outAt, this.#load(x, xAt, s, simd.eAt), w);
  }
}

/** The WebAssembly API used here (lib ES2022 declares none). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer };
}

interface SimdKernels {
  /** The whole wasm memory as floats and as doubles (it never grows, so the views stay valid). */
  readonly f32: Float32Array;
  readonly f64: Float64Array;
  /** out[d] = Σ_i e[i] P[i·D + d] in doubles (e, out: f64; P: f32), S += out; returns |out|²;
   *  byte addresses. */
  readonly project: (e: number, s: number, P: number, D: number, out: number, S: number) => number;
  /** dv = g (S − V) in floats (S, V: f64); byte addresses. */
  readonly dvOf: (S: number, V: number, g: number, D: number, dv: number) => void;
  /** grad[i] = Σ_d P[i·D + d] dv[d] and dP[i·D + d] += e[i] dv[d] in floats (e: f64, read as
   *  f32); byte addresses. */
  readonly backProject: (
    e: number,
    s: number,
    P: number,
    dP: number,
    D: number,
    dv: number,
    grad: number,
  ) => void;
  /** u = x G (G symmetric, sp × sp; x, u: f64) and returns x · u; byte addresses. */
  readonly selfTerm: (x: number, sp: number, G: number, u: number) => number;
  /** M += w x yᵀ (M sp × sp; x, y: f64); byte addresses. */
  readonly outer: (M: number, x: number, y: number, sp: number, w: number) => void;
  /** Byte address of P_s and dP_s, G_s and M_s per tier index (-1 for tiers without a projection). */
  readonly pAt: Int32Array;
  readonly dpAt: Int32Array;
  readonly gAt: Int32Array;
  readonly mAt: Int32Array;
  readonly eAt: number;
  readonly outAt: number;
  /** Byte address of the model's per-event V (maxTokens × D, f64) and S (D, f64). */
  readonly vAt: number;
  readonly sAt: number;
  readonly maxTokens: number;
  readonly dvAt: number;
  readonly gradAt: number;
}

/** The compiled module: undefined until first asked, null when the runtime cannot run it. */
let simdModule: object | null | undefined;

/** Kernels over a fresh memory laid out for these tier sizes, or null (no SIMD, or D % 4 ≠ 0). */
function createSimdKernels(sizes: readonly number[], D: number, maxTokens: number): SimdKernels | null {
  const api = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
  if (api === undefined || D % 4 !== 0) return null;
  if (simdModule === undefined) {
    try {
      simdModule = new api.Module(simdModuleBytes());
    } catch {
      simdModule = null;
    }
  }
  if (simdModule === null) return null;
  // Every block is a multiple of D floats, so 16-byte aligned for v128 loads.
  const pAt = new Int32Array(sizes.length).fill(-1);
  const dpAt = new Int32Array(sizes.length).fill(-1);
  const gAt = new Int32Array(sizes.length).fill(-1);
  const mAt = new Int32Array(sizes.length).fill(-1);
  let at = 0;
  for (let ti = 0; ti < sizes.length; ti++) {
    const s = sizes[ti];
    if (s === 0 || s === D) continue;
    const sp = gramStride(s);
    pAt[ti] = at;
    at += s * D * 4;
    dpAt[ti] = at;
    at += s * D * 4;
    gAt[ti] = at;
    at += sp * sp * 8;
    mAt[ti] = at;
    at += sp * sp * 8;
  }
  const eAt = at;
  const outAt = eAt + D * 8;
  const dvAt = outAt + D * 8;
  const gradAt = dvAt + D * 4;
  const vAt = gradAt + D * 4;
  const sAt = vAt + maxTokens * D * 8;
  const bytes = sAt + D * 8;
  const memory = new api.Memory({ initial: Math.ceil(bytes / 65536) });
  const { exports } = new api.Instance(simdModule, { m: { mem: memory } });
  return {
    f32: new Float32Array(memory.buffer),
    f64: new Float64Array(memory.buffer),
    project: exports.project as SimdKernels['project'],
    backProject: exports.backProject as SimdKernels['backProject'],
    selfTerm: exports.selfTerm as SimdKernels['selfTerm'],
    outer: exports.outer as SimdKernels['outer'],
    dvOf: exports.dvOf as SimdKernels['dvOf'],
    pAt,
    dpAt,
    gAt,
    mAt,
    eAt,
    outAt,
    dvAt,
    gradAt,
    vAt,
    sAt,
    maxTokens,
  };
}

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** The kernels' module, in the WebAssembly binary format (core spec + fixed-width SIMD). */
function simdModuleBytes(): Uint8Array {
  const I32 = 0x7f;
  const V128 = 0x7b;
  const get = (i: number) => [0x20, i];
  const set = (i: number) => [0x21, i];
  const tee = (i: number) => [0x22, i];
  const i32 = (n: number) => [0x41, n]; // 0 ≤ n < 64: one signed-LEB byte
  const add = 0x6a;
  const shl = 0x74;
  const geU = 0x4f;
  const block = [0x02, 0x40];
  const loop = [0x03, 0x40];
  const brIf = (depth: number) => [0x0d, depth];
  const br = (depth: number) => [0x0c, depth];
  const end = 0x0b;
  const f64Load = [0x2b, 3, 0];
  const load64Zero = (offset: number) => [0xfd, 0x5d, 3, offset];
  const promote = [0xfd, 0x5f];
  const v128StoreAt = (offset: number) => [0xfd, 0x0b, 4, offset];
  const dSplat = [0xfd, 0x14];
  const dAdd = [0xfd, 0xf0, 0x01];
  const dMul = [0xfd, 0xf2, 0x01];
  const f32Store = [0x38, 2, 0];
  const f32Add = 0x92;
  const v128Load = [0xfd, 0x00, 4, 0];
  const v128Store = [0xfd, 0x0b, 4, 0];
  const v128Zero = [0xfd, 0x0c, ...new Array<number>(16).fill(0)];
  const splat = [0xfd, 0x13];
  const fAdd = [0xfd, 0xe4, 0x01];
  const fMul = [0xfd, 0xe6, 0x01];
  const lane = (l: number) => [0xfd, 0x1f, l];
  const F64 = 0x7c;
  const f64Store = [0x39, 3, 0];
  const f64Add = 0xa0;
  const f64Mul = 0xa2;
  const dLane = (l: number) => [0xfd, 0x21, l];
  const dSub = [0xfd, 0xf1, 0x01];
  const shrU = 0x76;
  const demote = [0xfd, 0x5e];
  const store64Lane0 = [0xfd, 0x5b, 3, 0, 0];
  const v128LoadAt = (offset: number) => [0xfd, 0x00, 4, offset];
  // project(e 0, s 1, P 2, D 3, out 4, S 5) -> |out|²; locals d 6, i 7, p 8, bytes 9, at 10
  // (i32), a 11, b 12, x 13, n 14 (v128). For d in 0..D step 4 (d counts P's bytes): a, b =
  // Σ_i e[i] · P[i, d..d+2), P[i, d+2..d+4), with P's floats promoted to doubles; out[d..d+4) =
  // a, b; S[d..d+4) += a, b; n += a², b² (the vector's squared norm, lanes summed at the end).
  const project = [
    ...[...get(3), ...i32(2), shl, ...set(9)],
    ...block,
    ...loop,
    ...[...get(6), ...get(9), geU, ...brIf(1)],
    ...[
      ...v128Zero,
      ...set(11),
      ...v128Zero,
      ...set(12),
      ...i32(0),
      ...set(7),
      ...get(2),
      ...get(6),
      add,
      ...set(8),
    ],
    ...block,
    ...loop,
    ...[...get(7), ...get(1), geU, ...brIf(1)],
    ...[...get(0), ...get(7), ...i32(3), shl, add, ...f64Load, ...dSplat, ...set(13)],
    ...[...get(11), ...get(8), ...load64Zero(0), ...promote, ...get(13), ...dMul, ...dAdd, ...set(11)],
    ...[...get(12), ...get(8), ...load64Zero(8), ...promote, ...get(13), ...dMul, ...dAdd, ...set(12)],
    ...[...get(8), ...get(9), add, ...set(8), ...get(7), ...i32(1), add, ...set(7), ...br(0)],
    end,
    end,
    ...[...get(4), ...get(6), ...i32(1), shl, add, ...tee(10), ...get(11), ...v128Store],
    ...[...get(10), ...get(12), ...v128StoreAt(16)],
    ...[...get(5), ...get(6), ...i32(1), shl, add, ...tee(10), ...get(10), ...v128Load, ...get(11), ...dAdd],
    ...v128Store,
    ...[...get(10), ...get(10), ...v128LoadAt(16), ...get(12), ...dAdd, ...v128StoreAt(16)],
    ...[...get(14), ...get(11), ...get(11), ...dMul, ...dAdd, ...get(12), ...get(12), ...dMul, ...dAdd],
    ...set(14),
    ...[...get(6), ...i32(16), add, ...set(6), ...br(0)],
    end,
    end,
    ...[...get(14), ...dLane(0), ...get(14), ...dLane(1), f64Add],
    end,
  ];
  // dvOf(S 0, V 1, g 2 f64, D 3, dv 4); locals d 5, bytes 6 (i32): dv[d] = g (S[d] − V[d]) as
  // floats (f32x4.demote_f64x2_zero, two lanes stored), two dims a turn.
  const dvOf = [
    ...[...get(3), ...i32(3), shl, ...set(6)],
    ...block,
    ...loop,
    ...[...get(5), ...get(6), geU, ...brIf(1)],
    ...[...get(4), ...get(5), ...i32(1), shrU, add],
    ...[...get(0), ...get(5), add, ...v128Load, ...get(1), ...get(5), add, ...v128Load, ...dSub],
    ...[...get(2), ...dSplat, ...dMul, ...demote, ...store64Lane0],
    ...[...get(5), ...i32(16), add, ...set(5), ...br(0)],
    end,
    end,
    end,
  ];
  // backProject(e 0, s 1, P 2, dP 3, D 4, dv 5, grad 6); locals i 7, d 8, bytes 9, row 10 (i32),
  // x 11, g 12, q 13 (v128), at 14 (i32). Per row i: x = e[i] as a float (f32.demote_f64, 0xb6),
  // g = Σ P[i, ·] dv (lanes summed at the end), dP[i, ·] += x dv, one pass over the row.
  const backProject = [
    ...[...get(4), ...i32(2), shl, ...set(9)],
    ...block,
    ...loop,
    ...[...get(7), ...get(1), geU, ...brIf(1)],
    ...[...get(0), ...get(7), ...i32(3), shl, add, ...f64Load, 0xb6, ...splat, ...set(11)],
    ...[...v128Zero, ...set(12), ...i32(0), ...set(8)],
    ...block,
    ...loop,
    ...[...get(8), ...get(9), geU, ...brIf(1)],
    ...[...get(5), ...get(8), add, ...v128Load, ...set(13)],
    ...[
      ...get(12),
      ...get(2),
      ...get(10),
      add,
      ...get(8),
      add,
      ...v128Load,
      ...get(13),
      ...fMul,
      ...fAdd,
      ...set(12),
    ],
    ...[...get(3), ...get(10), add, ...get(8), add, ...tee(14)],
    ...[...get(14), ...v128Load, ...get(11), ...get(13), ...fMul, ...fAdd, ...v128Store],
    ...[...get(8), ...i32(16), add, ...set(8), ...br(0)],
    end,
    end,
    ...[...get(6), ...get(7), ...i32(2), shl, add],
    ...[...get(12), ...lane(0), ...get(12), ...lane(1), f32Add, ...get(12), ...lane(2), f32Add],
    ...[...get(12), ...lane(3), f32Add, ...f32Store],
    ...[...get(10), ...get(9), add, ...set(10), ...get(7), ...i32(1), add, ...set(7), ...br(0)],
    end,
    end,
    end,
  ];
  // selfTerm(x 0, sp 1, G 2, u 3) -> norm; locals bytes 4, j 5, i 6, row 7 (i32), acc 8 (v128),
  // norm 9, uj 10 (f64). G is symmetric, sp × sp: u[j] = G[j, ·] · x (a dot product per j, two
  // lanes summed at the end), norm = Σ u[j] x[j]. sp is even, x and G zero-padded to it.
  const selfTerm = [
    ...[...get(1), ...i32(3), shl, ...set(4), ...get(2), ...set(7)],
    ...block,
    ...loop,
    ...[...get(5), ...get(4), geU, ...brIf(1)],
    ...[...v128Zero, ...set(8), ...i32(0), ...set(6)],
    ...block,
    ...loop,
    ...[...get(6), ...get(4), geU, ...brIf(1)],
    ...[...get(8), ...get(7), ...get(6), add, ...v128Load, ...get(0), ...get(6), add, ...v128Load],
    ...[...dMul, ...dAdd, ...set(8), ...get(6), ...i32(16), add, ...set(6), ...br(0)],
    end,
    end,
    ...[...get(3), ...get(5), add, ...get(8), ...dLane(0), ...get(8), ...dLane(1), f64Add, ...tee(10)],
    ...f64Store,
    ...[...get(9), ...get(10), ...get(0), ...get(5), add, ...f64Load, f64Mul, f64Add, ...set(9)],
    ...[...get(7), ...get(4), add, ...set(7), ...get(5), ...i32(8), add, ...set(5), ...br(0)],
    end,
    end,
    ...get(9),
    end,
  ];
  // outer(M 0, x 1, y 2, sp 3, w 4 f64); locals bytes 5, i 6, j 7, row 8, at 9 (i32), wx 10
  // (v128): M[i, ·] += (w x[i]) y, M sp × sp.
  const outer = [
    ...[...get(3), ...i32(3), shl, ...set(5), ...get(0), ...set(8)],
    ...block,
    ...loop,
    ...[...get(6), ...get(5), geU, ...brIf(1)],
    ...[
      ...get(4),
      ...get(1),
      ...get(6),
      add,
      ...f64Load,
      f64Mul,
      ...dSplat,
      ...set(10),
      ...i32(0),
      ...set(7),
    ],
    ...block,
    ...loop,
    ...[...get(7), ...get(5), geU, ...brIf(1)],
    ...[...get(8), ...get(7), add, ...tee(9), ...get(9), ...v128Load],
    ...[...get(10), ...get(2), ...get(7), add, ...v128Load, ...dMul, ...dAdd, ...v128Store],
    ...[...get(7), ...i32(16), add, ...set(7), ...br(0)],
    end,
    end,
    ...[...get(8), ...get(5), add, ...set(8), ...get(6), ...i32(8), add, ...set(6), ...br(0)],
    end,
    end,
    end,
  ];
  const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
  const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
  const name = (s: string) => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
  const body = (locals: number[][], code: number[]) => {
    const b = [...vec(locals), ...code];
    return [...uleb(b.length), ...b];
  };
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(
      1,
      vec([
        [0x60, ...vec(Array(6).fill([I32])), 1, F64],
        [0x60, ...vec(Array(7).fill([I32])), 0],
        [0x60, ...vec(Array(4).fill([I32])), 1, F64],
        [0x60, ...vec([[I32], [I32], [I32], [I32], [F64]]), 0],
        [0x60, ...vec([[I32], [I32], [F64], [I32], [I32]]), 0],
      ]),
    ),
    ...section(2, vec([[...name('m'), ...name('mem'), 0x02, 0x00, 0x01]])),
    ...section(3, vec([[0], [1], [2], [3], [4]])),
    ...section(
      7,
      vec([
        [...name('project'), 0x00, 0],
        [...name('backProject'), 0x00, 1],
        [...name('selfTerm'), 0x00, 2],
        [...name('outer'), 0x00, 3],
        [...name('dvOf'), 0x00, 4],
      ]),
    ),
    ...section(
      10,
      vec([
        body(
          [
            [5, I32],
            [4, V128],
          ],
          project,
        ),
        body(
          [
            [4, I32],
            [3, V128],
            [1, I32],
          ],
          backProject,
        ),
        body(
          [
            [4, I32],
            [1, V128],
            [2, F64],
          ],
          selfTerm,
        ),
        body(
          [
            [5, I32],
            [1, V128],
          ],
          outer,
        ),
        body([[2, I32]], dvOf),
      ]),
    ),
  ]);
}
