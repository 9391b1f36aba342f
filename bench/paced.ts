/**
 * Open-loop HTTP load at a steady rate, as lean as a Node client can be: request i is written at
 * start + i / rate on an idle keep-alive socket (a new one is opened when none is idle), whether or
 * not earlier ones have answered, and its latency runs from that write to the end of its response.
 * Requests are pre-serialized bytes and responses are parsed only for status and content-length:
 * the load generator shares the machine's cores with the server, so every microsecond it spends per
 * request is one the server may wait for (node:http's client costs several times more).
 */
import net from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';

export interface PacedRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface PacedResult {
  requestsPerSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  non2xx: number;
  errors: number;
  /** How late the client wrote its requests against the schedule (its own timer and load). */
  sendLateP99Ms: number;
  /** Sockets the client needed (one per request in flight at the busiest moment). */
  sockets: number;
  /** The client's own event-loop delay p99: a response it reads late counts as latency. */
  clientLoopDelayP99Ms: number;
}

const HEADER_END = Buffer.from('\r\n\r\n');

function serialize(host: string, r: PacedRequest): Buffer {
  const body = r.body ?? '';
  const headers = Object.entries(r.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  const length = r.method === 'GET' ? '' : `content-length: ${Buffer.byteLength(body)}\r\n`;
  return Buffer.from(`${r.method} ${r.path} HTTP/1.1\r\nhost: ${host}\r\n${headers}${length}\r\n${body}`);
}

/** One keep-alive connection carrying one request at a time. */
class Connection {
  readonly socket: net.Socket;
  #pending: Buffer[] = [];
  #received = 0;
  #expected = -1;
  #status = 0;
  #onDone: ((status: number) => void) | null = null;
  /** Closed (by the server's keep-alive timeout, or an error): not to be used again. */
  closed = false;

  constructor(host: string, port: number, onError: () => void) {
    this.socket = net.connect({ host, port, noDelay: true });
    this.socket.on('close', () => {
      this.closed = true;
    });
    this.socket.on('data', (chunk: Buffer) => this.#data(chunk));
    this.socket.on('error', () => {
      if (this.#onDone !== null) {
        this.#onDone = null;
        onError();
      }
    });
  }

  get busy(): boolean {
    return this.#onDone !== null;
  }

  send(bytes: Buffer, onDone: (status: number) => void): void {
    this.#onDone = onDone;
    this.#pending = [];
    this.#received = 0;
    this.#expected = -1;
    this.socket.write(bytes);
  }

  #data(chunk: Buffer): void {
    this.#pending.push(chunk);
    this.#received += chunk.length;
    if (this.#expected < 0) {
      const head = this.#pending.length === 1 ? chunk : Buffer.concat(this.#pending);
      const end = head.indexOf(HEADER_END);
      if (end < 0) return;
      const text = head.subarray(0, end).toString('latin1');
      this.#status = Number(text.slice(9, 12));
      const m = /\r\ncontent-length: *(\d+)/i.exec(text);
      this.#expected = end + 4 + (m === null ? 0 : Number(m[1]));
    }
    if (this.#received < this.#expected) return;
    const done = this.#onDone;
    this.#onDone = null;
    done?.(this.#status);
  }
}

export async function paced(
  url: string,
  requests: readonly PacedRequest[],
  rate: number,
  seconds: number,
): Promise<PacedResult> {
  const target = new URL(url);
  const port = Number(target.port);
  const bytes = requests.map((r) => serialize(target.host, r));
  const total = Math.round(rate * seconds);
  const latencies = new Float64Array(total);
  const late = new Float64Array(total);
  let answered = 0;
  let non2xx = 0;
  let errors = 0;
  const connections: Connection[] = [];
  const idle: Connection[] = [];
  const open = (): Connection => {
    const c = new Connection(target.hostname, port, () => {
      errors++;
      finish();
    });
    connections.push(c);
    return c;
  };
  // Sockets opened up front (and connected) so that the run does not start with handshakes.
  for (let i = 0; i < 16; i++) idle.push(open());
  await Promise.all(connections.map((c) => new Promise((resolve) => c.socket.once('connect', resolve))));

  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  let completed = 0;
  const finish = (): void => {
    if (++completed === total) done();
  };
  const clientDelay = monitorEventLoopDelay({ resolution: 1 });
  clientDelay.enable();
  const start = performance.now() + 5;
  const send = (i: number): void => {
    // Oldest idle first, so every socket stays in use (servers close idle keep-alive sockets).
    let c = idle.shift();
    while (c?.closed) c = idle.shift();
    c ??= open();
    const sentAt = performance.now();
    late[i] = sentAt - (start + (i * 1000) / rate);
    c.send(bytes[i % bytes.length], (status) => {
      latencies[answered++] = performance.now() - sentAt;
      if (status < 200 || status >= 300) non2xx++;
      idle.push(c);
      finish();
    });
  };
  let sent = 0;
  const pump = (): void => {
    const now = performance.now();
    while (sent < total && start + (sent * 1000) / rate <= now) send(sent++);
    if (sent < total) setTimeout(pump, 1);
  };
  setTimeout(pump, 5);
  await finished;
  clientDelay.disable();
  for (const c of connections) c.socket.destroy();

  const l = latencies.subarray(0, answered).sort();
  const at = (a: Float64Array, q: number): number =>
    a.length === 0 ? Number.NaN : a[Math.min(a.length - 1, Math.floor(q * a.length))];
  return {
    requestsPerSecond: answered / seconds,
    p50Ms: at(l, 0.5),
    p90Ms: at(l, 0.9),
    p99Ms: at(l, 0.99),
    maxMs: l.length === 0 ? Number.NaN : l[l.length - 1],
    non2xx,
    errors,
    sendLateP99Ms: at(late.sort(), 0.99),
    sockets: connections.length,
    clientLoopDelayP99Ms: clientDelay.percentile(99) / 1e6,
  };
}
