/**
 * Line reading shared by every file format: a file (plain or `.gz`) becomes batches of lines,
 * one batch per read chunk, so a parser loops over plain strings and the async machinery costs
 * one await per ~1 MiB rather than one per line.
 */
import { createReadStream } from 'node:fs';
import { pipeline, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { PmeError } from '../errors.js';

/** Bytes per read; large chunks keep the per-chunk await negligible next to parsing. */
const CHUNK_BYTES = 1 << 20;

function openText(path: string): Readable {
  const file = createReadStream(path, { highWaterMark: CHUNK_BYTES });
  if (!path.endsWith('.gz')) {
    file.setEncoding('utf8');
    return file;
  }
  // pipeline (not pipe) so an error of the file stream (ENOENT) reaches the gunzip stream we read.
  const gunzip = pipeline(file, createGunzip({ chunkSize: CHUNK_BYTES }), () => {});
  gunzip.setEncoding('utf8');
  return gunzip;
}

/**
 * Yields the lines of a text file in batches, without their `\n` / `\r\n` ends. A leading BOM
 * is dropped. An unreadable file raises `PME_ERR_DATA_FILE`. Breaking out of the loop closes
 * the file.
 */
export async function* lineBatches(path: string): AsyncGenerator<string[], void, undefined> {
  const source = openText(path);
  let rest = '';
  let first = true;
  try {
    for await (const chunk of source as AsyncIterable<string>) {
      let text = rest + chunk;
      if (first) {
        if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
        first = false;
      }
      const lines = text.split('\n');
      rest = lines.pop() as string;
      if (lines.length > 0) yield stripCr(lines);
    }
  } catch (error) {
    throw new PmeError('PME_ERR_DATA_FILE', path, (error as Error).message);
  } finally {
    source.destroy();
  }
  if (rest.length > 0) yield stripCr([rest]);
}

function stripCr(lines: string[]): string[] {
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.charCodeAt(line.length - 1) === 13) lines[i] = line.slice(0, -1);
  }
  return lines;
}

/**
 * Splits one CSV line (RFC 4180 quoting: `"a, b"`, `""` for a quote inside quotes). Lines
 * without a quote take the fast path. Quoted fields spanning several lines are not supported
 * (none of the formats read here has them).
 */
export function splitCsv(line: string, separator = ','): string[] {
  if (line.indexOf('"') < 0) return line.split(separator);
  const out: string[] = [];
  let i = 0;
  for (;;) {
    let value = '';
    if (line.charCodeAt(i) === 34) {
      i++;
      for (;;) {
        const q = line.indexOf('"', i);
        if (q < 0) {
          // Unterminated quote: take the rest as the value, the column count will tell.
          value += line.slice(i);
          i = line.length;
          break;
        }
        value += line.slice(i, q);
        i = q + 1;
        if (line.charCodeAt(i) !== 34) break;
        value += '"';
        i++;
      }
    }
    // After a closing quote, text up to the separator is kept, as most readers do.
    const end = line.indexOf(separator, i);
    if (end < 0) {
      out.push(value + line.slice(i));
      return out;
    }
    out.push(value + line.slice(i, end));
    i = end + separator.length;
  }
}
