/**
 * When resolved rows reach the model, picked once from the model's cadence: row by row as they are
 * resolved ('event': each event is learned before the next one is resolved), or all together at
 * the end of the mini-batch ('batch': a model with dense work per batch).
 */
import type { Model, Rows, ScoreSink } from '../model/model.js';
import { Rows as RowBuffer } from '../model/model.js';

export interface RowFeed {
  readonly rows: Rows;
  /** The row the next event is resolved into. */
  eventRow(): number;
  /** The row of a negative of the event in row `eventRow`, holding that event's `userCount`
   *  user-side tokens already. */
  negativeRow(eventRow: number, userCount: number): number;
  /** Row r is resolved: learned now, or kept for the end of the batch. */
  resolved(r: number): void;
  /** End of a mini-batch: the kept rows are learned. */
  endBatch(): void;
}

export function rowFeed(model: Model, fieldNames: readonly string[], scores: ScoreSink): RowFeed {
  const rows = new RowBuffer(model.maxTokens, fieldNames);
  return model.cadence === 'event' ? new EachRow(model, rows, scores) : new BatchOfRows(model, rows, scores);
}

/** What both feeds hold: the rows, the model they go to, where its scores go. */
abstract class Feed {
  readonly rows: Rows;
  protected readonly model: Model;
  protected readonly scores: ScoreSink;

  constructor(model: Model, rows: Rows, scores: ScoreSink) {
    this.model = model;
    this.rows = rows;
    this.scores = scores;
  }
}

/** One row, learned as soon as it is resolved; a negative reuses it (the user side stays in place). */
class EachRow extends Feed implements RowFeed {
  eventRow(): number {
    return 0;
  }

  negativeRow(): number {
    return 0;
  }

  resolved(r: number): void {
    this.model.learn(this.rows, r, r + 1, this.scores);
  }

  endBatch(): void {}
}

/** Every row of the batch, learned at its end. */
class BatchOfRows extends Feed implements RowFeed {
  eventRow(): number {
    this.rows.reserve(this.rows.length + 1);
    return this.rows.length;
  }

  negativeRow(eventRow: number, userCount: number): number {
    const rows = this.rows;
    const r = rows.length;
    rows.reserve(r + 1);
    const from = eventRow * rows.stride;
    rows.ids.copyWithin(r * rows.stride, from, from + userCount);
    rows.fields.copyWithin(r * rows.stride, from, from + userCount);
    return r;
  }

  resolved(r: number): void {
    this.rows.length = r + 1;
  }

  endBatch(): void {
    const rows = this.rows;
    this.model.learn(rows, 0, rows.length, this.scores);
    rows.length = 0;
  }
}
