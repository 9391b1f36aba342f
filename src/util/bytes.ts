/** A count of bytes. */
export type Bytes = number;

/** Human-readable bytes for logs and tables: 1536 -> "1.5 KiB". */
export function formatBytes(bytes: Bytes): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/**
 * A growable byte buffer that strings are appended to as UTF-8, through Buffer's own write (no
 * view or encoded copy per string). Growing copies into a new buffer, so a view of what was
 * written before stays as it was. Capacity is a multiple of 4 and the buffer starts at offset 0
 * (float32 views of it are aligned).
 */
export class ByteWriter {
  buffer: Buffer;
  used = 0;

  constructor(size = 1 << 12) {
    this.buffer = Buffer.alloc(align4(size)); // alloc never takes a slice of the shared pool
  }

  /** Room for `n` more bytes. */
  reserve(n: number): void {
    if (this.used + n <= this.buffer.length) return;
    const buffer = Buffer.alloc(align4(Math.max(this.used + n, 2 * this.buffer.length)));
    this.buffer.copy(buffer, 0, 0, this.used);
    this.buffer = buffer;
  }

  /** Appends `text` as UTF-8. */
  write(text: string): void {
    this.reserve(3 * text.length); // UTF-8 takes at most 3 bytes per UTF-16 unit
    this.used += this.buffer.write(text, this.used, 'utf8');
  }

  /** What was written so far (a view: later writes leave it as it is). */
  view(): Buffer {
    return this.buffer.subarray(0, this.used);
  }
}

const align4 = (n: number): number => (n + 3) & ~3;
