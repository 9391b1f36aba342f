import { fileURLToPath } from 'node:url';
import t from 'tap';
import { detectMovieLensLayout, type Interaction, readEvents, streamEvents } from '../../src/data/index.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));

const find = (events: Interaction[], user: string, item: string): Interaction | undefined =>
  events.find((e) => e.user === user && e.item === item);

t.test('ratings.csv + movies.csv: labels, seconds to ms, genres, time order', async (t) => {
  const { events, catalog, report } = await readEvents({
    path: fixture('ratings.csv'),
    format: 'movielens',
    itemsPath: fixture('movies.csv'),
  });
  t.equal(report.layout, 'ratings.csv');
  t.equal(report.lines, 26, 'header and every data line are read');
  t.equal(report.malformed, 4);
  t.same(report.malformedByReason, { bad_rating: 1, columns: 1, bad_timestamp: 1, empty_id: 1 });
  t.same(
    report.examples,
    [
      { line: 9, reason: 'bad_rating' },
      { line: 11, reason: 'columns' },
      { line: 13, reason: 'bad_timestamp' },
      { line: 14, reason: 'empty_id' },
    ],
    'examples name the file line (1-based, header is line 1)',
  );
  t.equal(events.length, 25 - 4);
  t.equal(report.events, events.length);

  const a = find(events, '1', '10')!;
  t.equal(a.label, 1, 'rating 4.0 is positive');
  t.equal(a.timestamp, 1_000_000_300_000, 'unix seconds become ms');
  t.same(a.fields, { genre: 'Comedy', genres: 'Comedy|Drama' }, 'genre is the rarest of the set');
  t.equal(find(events, '1', '20')!.label, 0, 'rating 3.5 is negative');
  t.equal(find(events, '4', '20')!.label, 0);
  t.same(
    find(events, '3', '20')!.fields,
    { genre: 'Animation', genres: 'Animation|Children|Comedy' },
    'quoted title with a comma; tie on rarity broken by name',
  );
  t.same(
    find(events, '1', '30')!.fields,
    { genre: 'Drama', genres: 'Drama' },
    'doubled quotes inside a title',
  );
  t.same(find(events, '2', '50')!.fields, { genre: 'Thriller', genres: 'Drama|Thriller' });
  t.same(find(events, '2', '40')!.fields, {}, '(no genres listed) gives no genre field');
  t.same(find(events, '3', '60')!.fields, {}, 'a movie missing from the movies file has no genres');

  for (let i = 1; i < events.length; i++)
    t.ok(events[i - 1].timestamp <= events[i].timestamp, 'sorted by time');
  t.equal(events[0].user, '2', 'the earliest rating comes first');

  t.ok(report.items, 'the movies file has its own report');
  t.equal(report.items!.malformed, 1, 'a movie line without genres column is malformed');
  t.same(report.items!.examples, [{ line: 7, reason: 'columns' }]);
  const ids = catalog.map((c) => c.item);
  t.same(
    ids.slice(0, 6),
    ['10', '20', '30', '40', '50', '90'],
    'catalog starts with the movies file, in order',
  );
  t.ok(ids.includes('60'), 'items rated but not in the movies file join the catalog');
  t.same(catalog.find((c) => c.item === '90')!.fields, { genre: 'Comedy', genres: 'Comedy' });
  t.ok(catalog.every((c) => c.active));
});

t.test('sortByTime false keeps file order; limit stops early', async (t) => {
  const { events } = await readEvents({
    path: fixture('ratings.csv'),
    format: 'movielens',
    sortByTime: false,
  });
  t.same(
    events.slice(0, 3).map((e) => e.item),
    ['10', '20', '30'],
  );
  t.same(events[0].fields, {}, 'without a movies file there are no genre fields');
  const limited = await readEvents({ path: fixture('ratings.csv'), format: 'movielens', limit: 5 });
  t.equal(limited.events.length, 5);
  t.same(
    limited.events.map((e) => e.timestamp),
    [1_000_000_050_000, 1_000_000_100_000, 1_000_000_200_000, 1_000_000_300_000, 1_000_000_400_000],
    'the first five lines, then sorted',
  );
});

t.test('u.data (tabs, CRLF) + u.item (genre flags)', async (t) => {
  const { events, report } = await readEvents({
    path: fixture('u.data'),
    format: 'movielens',
    itemsPath: fixture('u.item'),
  });
  t.equal(report.layout, 'u.data');
  t.same(report.malformedByReason, { columns: 1, bad_rating: 1 });
  t.equal(events.length, 12);
  const e = find(events, '11', '101')!;
  t.equal(e.label, 1);
  t.equal(e.timestamp, 880_000_500_000);
  t.equal(e.item, '101', 'no carriage return left in the last column');
  t.same(e.fields, { genre: 'Adventure', genres: 'Action|Adventure|Thriller' });
  t.same(
    find(events, '11', '102')!.fields,
    { genre: 'Drama', genres: 'Comedy|Drama|Romance' },
    'title with a |',
  );
  t.same(find(events, '12', '103')!.fields, { genre: 'Animation', genres: "Animation|Children's|Comedy" });
  t.same(find(events, '13', '104')!.fields, {}, 'the unknown flag is no genre');
  t.same(find(events, '14', '105')!.fields, { genre: 'Sci-Fi', genres: 'Action|Sci-Fi|Thriller' });
  t.equal(find(events, '11', '102')!.label, 0, 'rating 2 is negative');
  t.equal(report.items!.layout, 'u.item');
  t.equal(report.items!.malformed, 1, 'a u.item line without its flags');
});

t.test('ratings.dat + movies.dat', async (t) => {
  const { events, report, catalog } = await readEvents({
    path: fixture('ratings.dat'),
    format: 'movielens',
    itemsPath: fixture('movies.dat'),
  });
  t.equal(report.layout, 'ratings.dat');
  t.same(report.malformedByReason, { columns: 1, bad_rating: 1 }, 'NaN is not a rating');
  t.same(
    events.map((e) => `${e.user}:${e.item}:${e.label}`),
    ['21:302:0', '22:301:1', '21:301:1', '23:304:1', '22:303:0', '24:305:0', '25:303:1', '25:305:0'],
  );
  t.same(find(events, '22', '301')!.fields, { genre: 'Sci-Fi', genres: 'Action|Sci-Fi' });
  t.same(find(events, '21', '302')!.fields, { genre: 'Comedy', genres: 'Comedy' }, 'a title with a colon');
  t.equal(report.items!.malformed, 1);
  t.same(
    catalog.map((c) => c.item),
    ['301', '302', '303', '304', '305'],
  );
});

t.test('layout detection', async (t) => {
  t.equal(detectMovieLensLayout('userId,movieId,rating,timestamp'), 'ratings.csv');
  t.equal(detectMovieLensLayout('1\t2\t3\t4'), 'u.data');
  t.equal(detectMovieLensLayout('1::2::3::4'), 'ratings.dat');
  t.equal(detectMovieLensLayout('1,2,3.5,4'), 'ratings.csv', 'headerless ratings.csv');
  t.equal(detectMovieLensLayout('1 2 3 4'), null);
  t.equal(detectMovieLensLayout('user,item,label,timestamp'), null, 'another header is not MovieLens');
});

t.test('streamEvents yields file order and fills the report', async (t) => {
  const { events: sorted } = await readEvents({
    path: fixture('ratings.csv'),
    format: 'movielens',
    sortByTime: false,
  });
  const { createDataReport } = await import('../../src/data/index.js');
  const report = createDataReport();
  const streamed: Interaction[] = [];
  for await (const e of streamEvents({ path: fixture('ratings.csv'), format: 'movielens' }, report))
    streamed.push(e);
  t.same(streamed, sorted, 'same events as readEvents without sorting');
  t.equal(report.malformed, 4);
  t.equal(report.events, streamed.length);
  t.equal(report.format, 'movielens');
});
