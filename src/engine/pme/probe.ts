/**
 * The window's probe: the last events learned, scored by the same model just before a window's
 * moves and just after them. The difference is what the window did to the model. The windowed
 * progressive AUC read before and after a window compares different events, so it moves with the
 * stream as much as with the window (on ml-latest-small it drops by as much after the same
 * positions with PME off).
 */
import type { Interaction } from '../../data/event.js';
import { exactAuc } from '../metrics.js';
import { logloss } from '../model/math.js';

/** AUC and mean logloss of the probe's events, before and after one window. */
export interface ProbeReport {
  events: number;
  aucBefore: number;
  aucAfter: number;
  loglossBefore: number;
  loglossAfter: number;
}

export interface ProbeScore {
  auc: number;
  logloss: number;
}

/** A ring of the last `capacity` events (references: the events are not copied). */
export class RecentEvents {
  readonly capacity: number;
  readonly #ring: Interaction[] = [];
  #at = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  add(event: Interaction): void {
    if (this.capacity === 0) return;
    if (this.#ring.length < this.capacity) this.#ring.push(event);
    else this.#ring[this.#at] = event;
    this.#at = (this.#at + 1) % this.capacity;
  }

  /** The events held, oldest first. */
  events(): Interaction[] {
    const r = this.#ring;
    return r.length < this.capacity ? r.slice() : [...r.slice(this.#at), ...r.slice(0, this.#at)];
  }

  clear(): void {
    this.#ring.length = 0;
    this.#at = 0;
  }
}

/** How well `predict` scores `events`: exact AUC (NaN without both labels) and mean logloss. */
export function scoreProbe(
  events: readonly Interaction[],
  predict: (events: readonly Interaction[]) => Float64Array,
): ProbeScore {
  const p = predict(events);
  const labels = new Float32Array(events.length);
  let loss = 0;
  for (let i = 0; i < events.length; i++) {
    labels[i] = events[i].label;
    loss += logloss(p[i], labels[i]);
  }
  return { auc: exactAuc(p, labels), logloss: events.length > 0 ? loss / events.length : Number.NaN };
}

/** The report of `events` scored before and after a window (null when either score is missing). */
export function probeReport(
  events: number,
  before: ProbeScore | null,
  after: ProbeScore | null,
): ProbeReport | null {
  if (before === null || after === null) return null;
  return {
    events,
    aucBefore: before.auc,
    aucAfter: after.auc,
    loglossBefore: before.logloss,
    loglossAfter: after.logloss,
  };
}
