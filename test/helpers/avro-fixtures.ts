import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Schema } from 'avsc';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'avro');

/** A schema of test/fixtures/avro: the project's records as older, newer or incompatible writers wrote them. */
export function avroFixture(name: string): Schema {
  return JSON.parse(readFileSync(join(dir, name), 'utf8')) as Schema;
}
