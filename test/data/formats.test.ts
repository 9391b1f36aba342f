import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import t from 'tap';
import {
  bucketCriteoInteger,
  createDataReport,
  FORMAT_NAMES,
  type Interaction,
  parseAvazuHour,
  parseTimestamp,
  RARE_VALUE,
  readEvents,
  streamEvents,
} from '../../src/data/index.js';
import { splitCsv } from '../../src/data/lines.js';
import { isPmeError } from '../../src/errors.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));

t.test('criteo: integer bucketing, empty tokens, user/item columns, row-index time', async (t) => {
  const { events, report, catalog } = await readEvents({ path: fixture('criteo.tsv'), format: 'criteo' });
  t.equal(report.layout, 'tsv');
  t.same(report.malformedByReason, { columns: 1, bad_label: 1, bad_integer: 1 });
  t.same(
    report.examples.map((e) => e.line),
    [6, 10, 14],
  );
  t.equal(events.length, 24);
  const first = events[0];
  t.equal(first.label, 0);
  t.equal(first.timestamp, 0);
  t.same(
    Array.from({ length: 13 }, (_, i) => first.fields[`I${i + 1}`]),
    // 3, 0, 5, -1, 1382, 4, 15, 2, 181, '', 7, 1, 100
    ['L1', '0', 'L2', '-1', 'L52', 'L1', 'L7', '2', 'L27', 'empty', 'L3', '1', 'L21'],
    'v > 2 -> L<floor(ln(v)^2)>, v <= 2 kept, empty -> empty',
  );
  const cols = (await import('node:fs'))
    .readFileSync(fixture('criteo.tsv'), 'utf8')
    .split('\n')[0]
    .split('\t');
  t.equal(first.user, cols[14], 'user is C1');
  t.equal(first.item, cols[15], 'item is C2');
  t.equal(first.fields.C3, cols[16]);
  t.equal(first.fields.C26, cols[39] === '' ? 'empty' : cols[39]);
  t.notOk(
    'C1' in first.fields || 'C2' in first.fields || 'label' in first.fields,
    'user/item columns are not fields',
  );
  t.equal(Object.keys(first.fields).length, 37);
  t.same(
    events.map((e) => e.timestamp),
    events.map((_, i) => i),
    'timestamps are the row index: file order',
  );
  t.ok(events.some((e) => e.label === 1) && events.some((e) => e.label === 0));
  t.equal(new Set(catalog.map((c) => c.item)).size, catalog.length, 'catalog has each item once');

  const swapped = await readEvents({
    path: fixture('criteo.tsv'),
    format: 'criteo',
    userColumn: 'C3',
    itemColumn: 'I1',
  });
  t.equal(swapped.events[0].user, cols[16]);
  t.equal(swapped.events[0].item, 'L1');
  t.equal(swapped.events[0].fields.C1, cols[14]);
  await t.rejects(readEvents({ path: fixture('criteo.tsv'), format: 'criteo', userColumn: 'C27' }), {
    code: 'PME_ERR_CONFIG_INVALID',
  });
});

t.test('bucketCriteoInteger at the edges', async (t) => {
  t.equal(bucketCriteoInteger(2), '2');
  t.equal(bucketCriteoInteger(-5), '-5');
  t.equal(bucketCriteoInteger(3), 'L1');
  t.equal(bucketCriteoInteger(8), 'L4', 'ln(8)^2 = 4.32');
  t.equal(bucketCriteoInteger(1_000_000), `L${Math.floor(Math.log(1e6) ** 2)}`);
});

t.test('minCount folds rare field values into one rare token per field', async (t) => {
  const plain = await readEvents({ path: fixture('criteo.tsv'), format: 'criteo' });
  const minCount = 6;
  const folded = await readEvents({ path: fixture('criteo.tsv'), format: 'criteo', minCount });
  const counts = new Map<string, number>();
  for (const e of plain.events)
    for (const k in e.fields) counts.set(`${k}=${e.fields[k]}`, (counts.get(`${k}=${e.fields[k]}`) ?? 0) + 1);
  let expectedFolds = 0;
  for (let i = 0; i < plain.events.length; i++) {
    const a = plain.events[i];
    const b = folded.events[i];
    t.equal(b.user, a.user, 'user is never folded');
    t.equal(b.item, a.item, 'item is never folded');
    for (const k in a.fields) {
      const rare = (counts.get(`${k}=${a.fields[k]}`) as number) < minCount;
      if (rare) expectedFolds++;
      if (b.fields[k] !== (rare ? RARE_VALUE : a.fields[k])) t.fail(`${k} of event ${i}`);
    }
  }
  t.ok(expectedFolds > 0, 'the fixture has rare values');
  t.equal(folded.report.rareFolded, expectedFolds);

  const report = createDataReport();
  const streamed: Interaction[] = [];
  for await (const e of streamEvents({ path: fixture('criteo.tsv'), format: 'criteo', minCount }, report))
    streamed.push(e);
  t.same(streamed, folded.events, 'streaming folds the same way (two passes)');
  t.equal(report.rareFolded, expectedFolds);
  t.equal(report.malformed, 3, 'the counting pass does not double the report');
});

t.test('avazu with header: labels, user/item mapping, hour split, time order', async (t) => {
  const { events, report, catalog } = await readEvents({
    path: fixture('avazu.csv'),
    format: 'avazu',
    sortByTime: false,
  });
  t.equal(report.layout, 'header');
  t.same(report.malformedByReason, { columns: 1, bad_label: 1, bad_hour: 1 });
  t.same(
    report.examples.map((e) => e.line),
    [5, 9, 13],
  );
  t.equal(events.length, 24);
  const [a, b] = events;
  t.equal(a.label, 0);
  t.equal(a.user, 'aa11bb22/m1234567', 'placeholder device id: user = ip/model');
  t.equal(a.item, '5a1b2c3d', 'site traffic: item = site_id');
  t.equal(a.timestamp, Date.UTC(2014, 9, 21, 0));
  t.equal(a.fields.hour_of_day, '0');
  t.equal(a.fields.weekday, 'tue');
  t.equal(b.label, 1);
  t.equal(b.user, 'd1e2f3a4', 'real device id: user = device_id');
  t.equal(b.item, '9f8e7d6c', 'app traffic (placeholder site): item = app_id');
  for (const gone of ['id', 'click', 'hour', 'site_id', 'app_id', 'device_id'])
    t.notOk(gone in a.fields, gone);
  for (const kept of [
    'C1',
    'banner_pos',
    'site_domain',
    'app_category',
    'device_ip',
    'device_model',
    'C21',
  ]) {
    t.ok(kept in a.fields, kept);
  }
  t.equal(Object.keys(a.fields).length, 20);
  const saturday = events.find((e) => e.timestamp === Date.UTC(2014, 9, 25, 13))!;
  t.same([saturday.fields.hour_of_day, saturday.fields.weekday], ['13', 'sat']);
  t.same(catalog.find((c) => c.item === '5a1b2c3d')!.fields, {
    site_domain: '6b2c3d4e',
    site_category: '7c3d4e5f',
  });
  t.same(catalog.find((c) => c.item === '9f8e7d6c')!.fields, {
    app_domain: '8e7d6c5b',
    app_category: '7d6c5b4a',
  });

  const sorted = (await readEvents({ path: fixture('avazu.csv'), format: 'avazu' })).events;
  const expected = events
    .map((e, i) => ({ e, i }))
    .sort((x, y) => x.e.timestamp - y.e.timestamp || x.i - y.i)
    .map((x) => x.e);
  t.same(sorted, expected, 'sorted by hour, file order within an hour');
  t.not(sorted[8].timestamp, events[8].timestamp, 'the fixture is out of order, so sorting moved rows');
});

t.test('avazu without header', async (t) => {
  const { events, report } = await readEvents({ path: fixture('avazu_noheader.csv'), format: 'avazu' });
  t.equal(report.layout, 'no-header');
  t.equal(report.lines, 11);
  t.same(report.malformedByReason, { columns: 1 });
  t.equal(events.length, 10, 'the first line is data, not a header');
  t.same(
    events.map((e) => e.fields.hour_of_day),
    ['6', '6', '6', '6', '6', '7', '7', '7', '7', '7'],
  );
  t.ok(events.every((e) => e.fields.weekday === 'wed'));
});

t.test('parseAvazuHour', async (t) => {
  t.equal(parseAvazuHour('14102100'), Date.UTC(2014, 9, 21, 0));
  t.equal(parseAvazuHour('14103123'), Date.UTC(2014, 9, 31, 23));
  t.ok(Number.isNaN(parseAvazuHour('14023100')), '31 February');
  t.ok(Number.isNaN(parseAvazuHour('14102124')));
  t.ok(Number.isNaN(parseAvazuHour('1410210')));
  t.ok(Number.isNaN(parseAvazuHour('14x02100')));
});

t.test('generic csv: header, ISO and ms times, quotes, empty fields, malformed', async (t) => {
  const { events, report, catalog } = await readEvents({ path: fixture('events.csv'), format: 'csv' });
  t.same(report.malformedByReason, { bad_label: 1, bad_timestamp: 1, columns: 1, empty_id: 1 });
  t.same(report.examples, [
    { line: 6, reason: 'bad_label' },
    { line: 7, reason: 'bad_timestamp' },
    { line: 8, reason: 'columns' },
    { line: 9, reason: 'empty_id' },
  ]);
  t.same(
    events.map((e) => `${e.user}>${e.item}@${e.timestamp}`),
    [
      `carol>book, special@${Date.UTC(2024, 2, 1, 9)}`,
      `alice>book-1@${Date.UTC(2024, 2, 1, 10)}`,
      `bob>book-2@${Date.UTC(2024, 2, 1, 10)}`,
      `alice>book-3@${Date.UTC(2024, 2, 1, 11)}`,
      `bob>book-1@${Date.UTC(2024, 2, 1, 11)}`,
      `carol>book-3@${Date.UTC(2024, 2, 1, 13)}`,
    ],
    'ISO (with zone) and ms mixed, sorted, ties in file order',
  );
  t.same(events[0].fields, { device: 'phone' }, 'an empty value gives no field');
  t.same(events[3], {
    user: 'alice',
    item: 'book-3',
    label: 0.5,
    timestamp: Date.UTC(2024, 2, 1, 11),
    fields: { device: 'tablet', country: 'fr' },
  });
  t.equal(events[5].fields.device, 'phone', 'quotes removed');
  t.equal(catalog.length, 4);
});

t.test('generic csv: label and timestamp columns are optional', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pme-data-'));
  const path = join(dir, 'positives.csv');
  await writeFile(path, 'item,user,shop\nx,u1,s1\ny,u2,s1\n\nz,u1,s2\n');
  const { events, report } = await readEvents({ path, format: 'csv' });
  t.same(events, [
    { user: 'u1', item: 'x', label: 1, timestamp: 0, fields: { shop: 's1' } },
    { user: 'u2', item: 'y', label: 1, timestamp: 1, fields: { shop: 's1' } },
    { user: 'u1', item: 'z', label: 1, timestamp: 2, fields: { shop: 's2' } },
  ]);
  t.equal(report.lines, 5, 'a blank line is read but is not malformed');
  t.equal(report.malformed, 0);

  const bad = join(dir, 'noheader.csv');
  await writeFile(bad, 'a,b,c\n1,2,3\n');
  await t.rejects(readEvents({ path: bad, format: 'csv' }), { code: 'PME_ERR_DATA_FILE' });
});

t.test('gzip files are read transparently', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pme-data-'));
  const { readFileSync } = await import('node:fs');
  const path = join(dir, 'ratings.csv.gz');
  await writeFile(path, gzipSync(readFileSync(fixture('ratings.csv'))));
  const gz = await readEvents({ path, format: 'movielens' });
  const plain = await readEvents({ path: fixture('ratings.csv'), format: 'movielens' });
  t.same(gz.events, plain.events);
  t.same(gz.report, plain.report);
});

t.test('errors: unknown format, unreadable file, bad options', async (t) => {
  const unknown = await readEvents({ path: fixture('events.csv'), format: 'parquet' }).catch(
    (e: unknown) => e,
  );
  t.ok(isPmeError(unknown, 'PME_ERR_DATA_FORMAT'));
  t.match((unknown as Error).message, 'parquet');
  t.match((unknown as Error).message, FORMAT_NAMES.join(', '), 'the message lists the known formats');
  const missing = await readEvents({ path: fixture('missing.csv'), format: 'csv' }).catch((e: unknown) => e);
  t.ok(isPmeError(missing, 'PME_ERR_DATA_FILE'));
  t.match((missing as Error).message, 'missing.csv');
  t.equal((missing as { statusCode: number }).statusCode, 400);
  await t.rejects(readEvents({ path: `${fixture('missing.csv')}.gz`, format: 'csv' }), {
    code: 'PME_ERR_DATA_FILE',
  });
  await t.rejects(readEvents({ path: fixture('events.csv'), format: 'movielens' }), {
    code: 'PME_ERR_DATA_FILE',
  });
  await t.rejects(
    readEvents({ path: fixture('ratings.csv'), format: 'movielens', itemsPath: fixture('nope.csv') }),
    { code: 'PME_ERR_DATA_FILE' },
  );
  await t.rejects(readEvents({ path: fixture('events.csv'), format: 'csv', limit: 0 }), {
    code: 'PME_ERR_CONFIG_INVALID',
  });
  await t.rejects(readEvents({ path: fixture('events.csv'), format: 'csv', minCount: 1.5 }), {
    code: 'PME_ERR_CONFIG_INVALID',
  });
  await t.rejects(
    readEvents({ path: fixture('events.csv'), format: 'csv', itemsPath: fixture('movies.csv') }),
    {
      code: 'PME_ERR_CONFIG_INVALID',
    },
  );
  const stream = streamEvents({ path: fixture('nothing-here.tsv'), format: 'criteo' });
  await t.rejects(stream.next(), { code: 'PME_ERR_DATA_FILE' });
});

t.test('only the first five malformed lines are kept as examples', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pme-data-'));
  const path = join(dir, 'bad.csv');
  await writeFile(path, `user,item,label\n${'a,b\n'.repeat(8)}u,i,1\n`);
  const { events, report } = await readEvents({ path, format: 'csv' });
  t.equal(events.length, 1);
  t.equal(report.malformed, 8);
  t.same(
    report.examples.map((e) => e.line),
    [2, 3, 4, 5, 6],
  );
});

t.test('splitCsv and parseTimestamp', async (t) => {
  t.same(splitCsv('a,b,c'), ['a', 'b', 'c']);
  t.same(splitCsv('1,"x, y",z'), ['1', 'x, y', 'z']);
  t.same(splitCsv('"a ""q"" b",'), ['a "q" b', '']);
  t.same(splitCsv('"",x'), ['', 'x']);
  t.same(splitCsv('1,"open'), ['1', 'open'], 'an unterminated quote takes the rest');
  t.equal(parseTimestamp('1709287200000'), 1709287200000);
  t.equal(parseTimestamp('2024-03-01T10:00:00Z'), Date.UTC(2024, 2, 1, 10));
  t.ok(Number.isNaN(parseTimestamp('')));
  t.ok(Number.isNaN(parseTimestamp('soon')));
});

t.test('BOM, CRLF and a missing final newline', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pme-data-'));
  const path = join(dir, 'bom.csv');
  await writeFile(path, '\ufeffuser,item,label\r\nu1,i1,1\r\nu2,i2,0');
  const { events, report } = await readEvents({ path, format: 'csv' });
  t.equal(report.malformed, 0, 'the BOM does not hide the header');
  t.same(
    events.map((e) => [e.user, e.item, e.label]),
    [
      ['u1', 'i1', 1],
      ['u2', 'i2', 0],
    ],
    'no \\r left, last line without newline read',
  );
});

t.test('streamEvents: leaving the loop early stops reading; limit applies', async (t) => {
  const report = createDataReport();
  const seen: Interaction[] = [];
  for await (const e of streamEvents({ path: fixture('avazu.csv'), format: 'avazu' }, report)) {
    seen.push(e);
    if (seen.length === 3) break;
  }
  t.equal(seen.length, 3);
  const limited: Interaction[] = [];
  const gen = streamEvents({ path: fixture('avazu.csv'), format: 'avazu', limit: 4 });
  let r = await gen.next();
  while (!r.done) {
    limited.push(r.value);
    r = await gen.next();
  }
  t.equal(limited.length, 4);
  t.equal(r.value.events, 4, 'the generator returns its report');
  t.same(limited.slice(0, 3), seen);
});
