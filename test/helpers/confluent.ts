/**
 * The Confluent side of the Avro tests. A schema registry that is a real HTTP server speaking the
 * part of the Confluent REST API the project calls, and values framed as a Confluent producer
 * frames them, written here rather than by src/stream/wire.ts so that a decoder under test is not
 * fed by the encoder it pairs with.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import avro from 'avsc';
import type { Test } from 'tap';

export interface FakeRegistry {
  /** Base URL, without a trailing slash. */
  readonly url: string;
  /** Every request so far, in order: `METHOD /path` and the Authorization header it carried. */
  readonly requests: Array<{ line: string; auth: string | undefined }>;
}

export interface FakeRegistryOptions {
  /** Schemas registered before it serves, by subject, in order: the first gets id 1. */
  subjects?: Record<string, readonly object[]>;
  /** The Authorization header every request must carry; any other gets 401. */
  auth?: string;
}

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';

/**
 * A registry listening on 127.0.0.1, closed when `t` ends. As the real one: registering a schema
 * it holds returns its id, ids are global across subjects, and GET /subjects/{s}/versions lists
 * the subject's version numbers (404 for a subject it lacks).
 */
export async function fakeSchemaRegistry(t: Test, options: FakeRegistryOptions = {}): Promise<FakeRegistry> {
  const schemas: string[] = [];
  const subjects = new Map<string, number[]>();
  const register = (subject: string, schema: string): number => {
    if (!schemas.includes(schema)) schemas.push(schema);
    const id = schemas.indexOf(schema) + 1;
    const ids = subjects.get(subject) ?? [];
    if (!ids.includes(id)) ids.push(id);
    subjects.set(subject, ids);
    return id;
  };
  for (const [subject, list] of Object.entries(options.subjects ?? {}))
    for (const schema of list) register(subject, JSON.stringify(schema));

  const requests: FakeRegistry['requests'] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on('end', () => {
      const url = req.url ?? '';
      requests.push({ line: `${req.method} ${url}`, auth: req.headers.authorization });
      const reply = (status: number, answer: unknown) => {
        res.writeHead(status, { 'content-type': CONTENT_TYPE });
        res.end(JSON.stringify(answer));
      };
      if (options.auth !== undefined && req.headers.authorization !== options.auth)
        return reply(401, { error_code: 401, message: 'Unauthorized' });
      const byId = /^\/schemas\/ids\/(\d+)$/.exec(url);
      if (byId !== null) {
        const schema = schemas[Number(byId[1]) - 1];
        return schema === undefined
          ? reply(404, { error_code: 40403, message: 'Schema not found' })
          : reply(200, { schema });
      }
      const subjectPath = /^\/subjects\/([^/]+)\/versions$/.exec(url);
      if (subjectPath !== null) {
        const subject = decodeURIComponent(subjectPath[1]);
        if (req.method === 'POST')
          return reply(200, { id: register(subject, (JSON.parse(body) as { schema: string }).schema) });
        const ids = subjects.get(subject);
        if (ids === undefined) return reply(404, { error_code: 40401, message: 'Subject not found' });
        const versions = ids.map((_, k) => k + 1);
        return reply(200, versions);
      }
      reply(404, { error_code: 404, message: 'HTTP 404 Not Found' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

/** `value` written with `schema`, framed as a Confluent producer frames it: a zero magic byte, the
 *  schema id (4 bytes, big-endian), then the Avro body. */
export function confluentFramed(id: number, schema: object, value: object): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(id, 1);
  return Buffer.concat([header, avro.Type.forSchema(schema as avro.Schema).toBuffer(value)]);
}
