/**
 * Training that shares one event loop with serving. A request waits for whatever synchronous
 * work runs when it arrives, so the work a service does besides answering is cut into slices of
 * about SLICE_MS with a macrotask turn between them: a mini-batch is learned in slices (which
 * trains exactly as one learn(), see Trainer.learnEvents), and the item-only term of score and
 * recommend is refreshed on a timer in bounded chunks instead of by a read that finds it late.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Interaction } from '../data/event.js';
import type { Trainer } from './trainer/index.js';

/** Longest stretch of training, in ms, before requests get a turn. */
export const SLICE_MS = 1;
/** Events learned between two looks at the clock (~0.1–0.3 ms of work). */
const EVENTS_PER_CHECK = 16;
/** Period of the item-term sweep timer: each tick refreshes its time share of the catalog. */
export const ITEM_REFRESH_TICK_MS = 5;

/** Learns one mini-batch in slices of about `sliceMs`, letting I/O in between, then ends it. */
export async function learnInSlices(
  trainer: Trainer,
  events: readonly Interaction[],
  sliceMs = SLICE_MS,
): Promise<void> {
  let sliceStart = performance.now();
  for (let i = 0; i < events.length; i += EVENTS_PER_CHECK) {
    trainer.learnEvents(events, i, Math.min(i + EVENTS_PER_CHECK, events.length));
    if (performance.now() - sliceStart >= sliceMs) {
      await nextTurn();
      sliceStart = performance.now();
    }
  }
  // Ending the batch (projections, item sweep share, PME bookkeeping) is a stretch of its own.
  if (performance.now() - sliceStart > 0.25 * sliceMs) await nextTurn();
  trainer.endBatch();
}

/** Refreshes the item-only term of score and recommend every `tickMs` (see Trainer.refreshItems); returns stop. */
export function startItemRefresh(trainer: Trainer, tickMs = ITEM_REFRESH_TICK_MS): () => void {
  const timer = setInterval(() => trainer.refreshItems(), tickMs);
  timer.unref();
  return () => clearInterval(timer);
}
