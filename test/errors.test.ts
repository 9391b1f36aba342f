import { readFileSync } from 'node:fs';
import t from 'tap';
import { ERRORS, PmeError } from '../src/errors.js';

t.test('every coded error formats its message and carries its status', async (t) => {
  const e = new PmeError('PME_ERR_DATA_FORMAT', 'xml', 'csv, criteo');
  t.equal(e.message, 'unknown data format "xml" (expected one of: csv, criteo)');
  t.equal(e.statusCode, 400);
  t.equal(e.code, 'PME_ERR_DATA_FORMAT');
  t.equal(e.retriable, false);
  for (const [code, spec] of Object.entries(ERRORS)) {
    t.match(code, /^PME_ERR_[A-Z]+(_[A-Z]+)*$/, `${code} follows PME_ERR_<AREA>_<PROBLEM>`);
    t.ok(spec.status >= 400 && spec.status < 600, `${code} has an HTTP status`);
  }
});

t.test('the README error table lists exactly the catalog, with the same statuses', async (t) => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const rows = [...readme.matchAll(/^\| `(PME_ERR_[A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [
    m[1],
    Number(m[2]),
  ]);
  t.same(
    Object.fromEntries(rows),
    Object.fromEntries(Object.entries(ERRORS).map(([code, spec]) => [code, spec.status])),
  );
});
