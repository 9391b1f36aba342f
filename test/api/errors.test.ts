/**
 * Error replies over real sockets: every bad request gets `{statusCode, code, error, message}`,
 * `code` a PME_ERR_* row of the README's error table with that row's status, `error` the reason
 * phrase of the status and a message that says what is wrong (the field, for a bad field).
 */
import { readFileSync } from 'node:fs';
import { type Server, STATUS_CODES } from 'node:http';
import { connect, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import type { ServiceApi } from '../../src/api/contract.js';
import { buildApi } from '../../src/api/server.js';
import { SyntheticWorkload } from '../../src/data/index.js';
import { Trainer } from '../../src/engine/index.js';
import { PmeError } from '../../src/errors.js';
import { serviceApi, tierMetrics, trainerReadiness } from '../../src/service/adapter.js';
import { ServiceMetrics } from '../../src/service/metrics.js';
import { RecentItems } from '../../src/service/recent.js';
import { EmbeddingStore } from '../../src/store/index.js';

const TOKEN = 's3cret';
const AUTH = { authorization: `Bearer ${TOKEN}` };

/** The README's error table: code -> status and the message template as a pattern (… is any text). */
function readmeErrors(): Map<string, { status: number; message: RegExp }> {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const rows = new Map<string, { status: number; message: RegExp }>();
  for (const m of readme.matchAll(/^\| `(PME_ERR_[A-Z_]+)` \| (\d{3}) \| (.*) \|$/gm)) {
    const escaped = m[3].replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/…/g, '.+');
    rows.set(m[1], { status: Number(m[2]), message: new RegExp(`^${escaped}$`, 's') });
  }
  return rows;
}

/**
 * A real trainer and store behind the API, but a prune window is always running (POST gets 409)
 * and `/v1/tiers` fails as a bug would (500).
 */
async function serve(t: Test): Promise<{ url: string; server: Server }> {
  const store = new EmbeddingStore({ seed: 7 });
  const trainer = new Trainer(store, { seed: 7 });
  const workload = new SyntheticWorkload({ seed: 7, users: 20, items: 50 });
  for (const item of workload.catalog()) trainer.upsertItem(item);
  trainer.learn(workload.take(500));
  const metrics = new ServiceMetrics({
    trainer: () => trainer.stats(),
    consumer: () => ({ consumed: 0, dlq: {}, lag: {} }),
    tiers: () => tierMetrics(store, trainer, null),
    pruneWindows: () => 0,
    backend: () => 'cpu',
  });
  const api: ServiceApi = {
    ...serviceApi({
      store,
      trainer,
      pme: null,
      recent: new RecentItems(),
      prune: {
        start: () => {
          throw new PmeError('PME_ERR_PRUNE_RUNNING');
        },
        windows: () => [],
      },
      metrics: () => metrics,
      readiness: trainerReadiness(() => true),
    }),
    tiers: () => {
      throw new Error('a bug');
    },
  };
  const app = await buildApi(api, { adminToken: TOKEN });
  t.teardown(() => app.close());
  return { url: await app.listen({ host: '127.0.0.1', port: 0 }), server: app.server };
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

const send = async (url: string, init: RequestInit = {}): Promise<Answer> => {
  const res = await fetch(url, init);
  return { status: res.status, headers: res.headers, text: await res.text() };
};

const postJson = (url: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> =>
  send(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

/** Bytes written as-is to the server (what fetch will not send), the answer parsed back. */
function raw(url: string, request: string): Promise<Answer> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname, () => socket.write(request));
  return answerOn(socket);
}

/** The HTTP answer read from `socket` until the server closes it. */
function answerOn(socket: Socket): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const [head, ...body] = text.split('\r\n\r\n');
      const [statusLine, ...lines] = head.split('\r\n');
      const headers = new Headers();
      for (const line of lines) {
        const at = line.indexOf(':');
        headers.append(line.slice(0, at).trim(), line.slice(at + 1).trim());
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, text: body.join('\r\n\r\n') });
    });
  });
}

t.test('every bad request gets the documented error shape', async (t) => {
  const { url } = await serve(t);
  const table = readmeErrors();
  const host = new URL(url).host;
  const cases: Array<[string, Promise<Answer>, number, string, RegExp]> = [
    // Bodies: JSON that does not parse, and fields of the wrong type (never coerced).
    ['not JSON', postJson(`${url}/v1/score`, '{"user":'), 400, 'PME_ERR_BAD_REQUEST', /JSON/],
    ['empty JSON body', postJson(`${url}/v1/score`, ''), 400, 'PME_ERR_BAD_REQUEST', /body is empty/],
    [
      'user a number',
      postJson(`${url}/v1/score`, { user: 5, items: ['i1'] }),
      400,
      'PME_ERR_BAD_REQUEST',
      /body\/user must be string/,
    ],
    [
      'a field value a number',
      postJson(`${url}/v1/score`, { user: 'u1', items: ['i1'], fields: { a: 1 } }),
      400,
      'PME_ERR_BAD_REQUEST',
      /body\/fields\/a must be string/,
    ],
    [
      'a null item',
      postJson(`${url}/v1/score`, { user: 'u1', items: [null] }),
      400,
      'PME_ERR_BAD_REQUEST',
      /body\/items\/0 must be string/,
    ],
    [
      'user true',
      postJson(`${url}/v1/score`, { user: true, items: ['i1'] }),
      400,
      'PME_ERR_BAD_REQUEST',
      /body\/user must be string/,
    ],
    [
      'missing items',
      postJson(`${url}/v1/score`, { user: 'u1' }),
      400,
      'PME_ERR_BAD_REQUEST',
      /body\/items is required/,
    ],
    [
      'unknown property',
      postJson(`${url}/v1/score`, { user: 'u1', items: ['i1'], extra: 1 }),
      400,
      'PME_ERR_BAD_REQUEST',
      /body\/extra is not allowed/,
    ],
    [
      'reason a number',
      postJson(`${url}/v1/prune`, { reason: 5 }, AUTH),
      400,
      'PME_ERR_BAD_REQUEST',
      /body\/reason must be string/,
    ],
    // Query strings and path parameters.
    [
      'k not a number',
      send(`${url}/v1/recommend?user=u1&k=ten`),
      400,
      'PME_ERR_BAD_REQUEST',
      /querystring\/k must be integer/,
    ],
    ['no user', send(`${url}/v1/recommend?k=3`), 400, 'PME_ERR_BAD_REQUEST', /querystring\/user is required/],
    [
      'token value too long',
      send(`${url}/v1/tokens/user/${'x'.repeat(300)}`),
      400,
      'PME_ERR_BAD_REQUEST',
      /params\/value must NOT have more than 256 characters/,
    ],
    ['bad URL encoding', send(`${url}/v1/tokens/user/%zz`), 400, 'PME_ERR_BAD_REQUEST', /%zz/],
    // Sizes and media types.
    [
      'body too large',
      postJson(`${url}/v1/score`, { user: 'u', items: ['x'.repeat(300 * 1024)] }),
      413,
      'PME_ERR_BODY_TOO_LARGE',
      /262144 bytes/,
    ],
    [
      'not JSON content',
      send(`${url}/v1/score`, {
        method: 'POST',
        headers: { 'content-type': 'application/xml' },
        body: '<a/>',
      }),
      415,
      'PME_ERR_UNSUPPORTED_MEDIA_TYPE',
      /application\/xml/,
    ],
    [
      'header fields too large',
      raw(url, `GET /healthz HTTP/1.1\r\nHost: ${host}\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`),
      431,
      'PME_ERR_HEADERS_TOO_LARGE',
      /header/,
    ],
    ['not HTTP', raw(url, 'HELLO\r\n\r\n'), 400, 'PME_ERR_BAD_REQUEST', /HTTP/],
    // Auth comes before anything about the body.
    ['no token, bad body', postJson(`${url}/v1/prune`, { reason: 5 }), 401, 'PME_ERR_UNAUTHORIZED', /Bearer/],
    ['no token, not JSON', postJson(`${url}/v1/prune`, '{'), 401, 'PME_ERR_UNAUTHORIZED', /Bearer/],
    [
      'no token, unknown property',
      postJson(`${url}/v1/prune`, { nope: 1 }),
      401,
      'PME_ERR_UNAUTHORIZED',
      /Bearer/,
    ],
    // Routes and methods.
    ['prune running', postJson(`${url}/v1/prune`, {}, AUTH), 409, 'PME_ERR_PRUNE_RUNNING', /already running/],
    ['unknown route', send(`${url}/v1/nothing`), 404, 'PME_ERR_NOT_FOUND', /GET \/v1\/nothing/],
    ['unknown token', send(`${url}/v1/tokens/user/never-seen`), 404, 'PME_ERR_NOT_FOUND', /user=never-seen/],
    ['GET a POST route', send(`${url}/v1/score`), 405, 'PME_ERR_METHOD_NOT_ALLOWED', /GET.*\/v1\/score/],
    [
      'DELETE a GET and POST route',
      send(`${url}/v1/prune`, { method: 'DELETE' }),
      405,
      'PME_ERR_METHOD_NOT_ALLOWED',
      /DELETE/,
    ],
    [
      'POST a route with parameters',
      postJson(`${url}/v1/tokens/user/u1`, {}),
      405,
      'PME_ERR_METHOD_NOT_ALLOWED',
      /POST/,
    ],
    // The route is wrong whatever the body says.
    [
      'wrong method, not JSON',
      postJson(`${url}/v1/tokens/user/u1`, '{'),
      405,
      'PME_ERR_METHOD_NOT_ALLOWED',
      /POST/,
    ],
    // Not the client's doing: no detail leaks.
    ['internal error', send(`${url}/v1/tiers`), 500, 'PME_ERR_INTERNAL', /^internal error$/],
  ];
  const allow: Record<string, string> = {
    'GET a POST route': 'POST',
    'DELETE a GET and POST route': 'GET, HEAD, POST',
    'POST a route with parameters': 'GET, HEAD',
    'wrong method, not JSON': 'GET, HEAD',
  };
  for (const [name, answer, status, code, what] of cases) {
    const reply = await answer;
    checkShape(t, table, name, reply, status, code, what);
    if (allow[name] !== undefined) t.equal(reply.headers.get('allow'), allow[name], `${name}: Allow header`);
  }
});

/** The reply is `{statusCode, code, error, message}` as the README's row for `code` has it. */
function checkShape(
  t: Test,
  table: ReturnType<typeof readmeErrors>,
  name: string,
  answer: Answer,
  status: number,
  code: string,
  what: RegExp,
): void {
  const { status: got, text } = answer;
  t.equal(got, status, `${name}: status`);
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text);
  } catch {
    t.fail(`${name}: the body is JSON: ${text.slice(0, 200)}`);
  }
  t.same(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'], `${name}: fields`);
  t.equal(body.statusCode, status, `${name}: statusCode`);
  t.equal(body.code, code, `${name}: code`);
  t.match(String(body.code), /^PME_ERR_/, `${name}: a PME_ERR_ code`);
  t.equal(body.error, STATUS_CODES[status], `${name}: error is the reason phrase`);
  t.match(String(body.message), what, `${name}: message says what is wrong: ${body.message}`);
  const row = table.get(String(body.code));
  t.equal(row?.status, status, `${name}: the README lists ${body.code} with status ${status}`);
  t.match(String(body.message), row?.message ?? /^$/, `${name}: message as the README has it`);
}

t.test('a request that does not arrive in time gets the same shape', async (t) => {
  const { url, server } = await serve(t);
  // Node raises this from its connection check, every 30 s by default: raised here at once, on
  // the server's side of a real connection.
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const { hostname, port } = new URL(url);
  const answer = answerOn(connect(Number(port), hostname));
  const timeout = Object.assign(new Error('request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' });
  server.emit('clientError', timeout, await accepted);
  checkShape(t, readmeErrors(), 'request timeout', await answer, 408, 'PME_ERR_REQUEST_TIMEOUT', /in time/);
});

t.test('what the fixes must not break', async (t) => {
  const { url } = await serve(t);
  // Query strings are text: numbers and booleans in them are still read as such.
  const rec = await send(`${url}/v1/recommend?user=u1&k=3&excludeRecent=true`);
  t.equal(rec.status, 200);
  t.equal(JSON.parse(rec.text).items.length, 3);
  // A prune request may have no body at all (auth first, then the trainer's answer).
  const bare = await send(`${url}/v1/prune`, { method: 'POST', headers: AUTH });
  t.equal(bare.status, 409);
  // HEAD answers where GET does.
  t.equal((await send(`${url}/healthz`, { method: 'HEAD' })).status, 200);
  const ok = await postJson(`${url}/v1/score`, { user: 'u1', items: ['i1', 'i2'], fields: { a: 'b' } });
  t.equal(ok.status, 200);
});
