/**
 * A one-line progress bar on stderr for long commands. Drawn only on a terminal and at most
 * every 100 ms; elsewhere (CI, pipes) it prints nothing until `done`.
 */
export class Progress {
  readonly #label: string;
  readonly #total: number;
  readonly #tty: boolean;
  readonly #started = performance.now();
  #lastDraw = 0;

  constructor(label: string, total: number, stream: NodeJS.WriteStream = process.stderr) {
    this.#label = label;
    this.#total = total;
    this.#tty = stream.isTTY === true;
  }

  /** `done` units of `total` are finished; `note` is shown after the bar. */
  update(done: number, note = ''): void {
    if (!this.#tty) return;
    const now = performance.now();
    if (now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    const share = this.#total > 0 ? Math.min(1, done / this.#total) : 0;
    const width = 30;
    const filled = Math.round(share * width);
    const rate = done / Math.max(1e-3, (now - this.#started) / 1000);
    process.stderr.write(
      `\r\x1b[K${this.#label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(share * 100).toFixed(0)}% ${done}/${this.#total} ${Math.round(rate)}/s ${note}`,
    );
  }

  /** Clears the bar and prints one closing line. */
  done(line: string): void {
    if (this.#tty) process.stderr.write('\r\x1b[K');
    process.stderr.write(`${line}\n`);
  }
}
