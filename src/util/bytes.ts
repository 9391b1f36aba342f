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
