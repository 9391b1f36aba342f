/**
 * The TensorFlow.js backend for dense work, chosen once at start, fastest first:
 * tfjs-node-gpu (CUDA), tfjs-node (native CPU), wasm, then the plain-JS cpu backend.
 * A package that is missing, or present without its native binding, throws on import; that is
 * the signal to try the next one. The sparse FM never needs this: only DeepFM and the batched
 * benchmark do, so nothing here is loaded unless asked.
 */

// biome-ignore lint/suspicious/noExplicitAny: the tfjs namespace differs per package; callers use its common core.
export type Tf = any;

export interface BackendChoice {
  /** 'tfjs-node-gpu' | 'tfjs-node' | 'wasm' | 'cpu' */
  name: string;
  tf: Tf;
  /** Why each faster candidate was skipped, for the start-up log. */
  skipped: Array<{ name: string; reason: string }>;
}

let chosen: Promise<BackendChoice> | null = null;
let chosenName: string | null = null;

function reason(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0].slice(0, 200);
}

// Module names in variables keep TypeScript from resolving packages that may be absent.
async function load(name: string): Promise<Tf> {
  return await import(name);
}

async function choose(): Promise<BackendChoice> {
  const skipped: BackendChoice['skipped'] = [];
  for (const [name, pkg] of [
    ['tfjs-node-gpu', '@tensorflow/tfjs-node-gpu'],
    ['tfjs-node', '@tensorflow/tfjs-node'],
  ] as const) {
    try {
      const tf = await load(pkg);
      await tf.ready();
      return { name, tf, skipped };
    } catch (error) {
      skipped.push({ name, reason: reason(error) });
    }
  }
  const tf = await load('@tensorflow/tfjs');
  try {
    await load('@tensorflow/tfjs-backend-wasm');
    if (await tf.setBackend('wasm')) {
      await tf.ready();
      return { name: 'wasm', tf, skipped };
    }
    skipped.push({ name: 'wasm', reason: 'setBackend("wasm") returned false' });
  } catch (error) {
    skipped.push({ name: 'wasm', reason: reason(error) });
  }
  await tf.setBackend('cpu');
  await tf.ready();
  return { name: 'cpu', tf, skipped };
}

/** Picks the backend on first call (later calls share the answer). */
export function initBackend(): Promise<BackendChoice> {
  if (chosen === null)
    chosen = choose().then((c) => {
      chosenName = c.name;
      return c;
    });
  return chosen;
}

/** The backend in use, or null before `initBackend()` has settled. */
export function backendName(): string | null {
  return chosenName;
}
