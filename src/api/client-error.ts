/**
 * Errors Node's HTTP parser meets before fastify has a request (headers too large, a request
 * that is not HTTP, one that never arrives in time): answered on the socket itself, in the same
 * shape as every other error, since fastify's default answer has no code.
 */
import { maxHeaderSize, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { PmeError } from '../errors.js';
import { errorBody } from './error-reply.js';

function asPmeError(error: NodeJS.ErrnoException): PmeError {
  if (error.code === 'HPE_HEADER_OVERFLOW') return new PmeError('PME_ERR_HEADERS_TOO_LARGE', maxHeaderSize);
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') return new PmeError('PME_ERR_REQUEST_TIMEOUT');
  return new PmeError('PME_ERR_BAD_REQUEST', `not a valid HTTP request (${error.code ?? error.message})`);
}

/** fastify's clientErrorHandler. */
export function answerClientError(error: NodeJS.ErrnoException, socket: Socket): void {
  // A reset peer leaves nothing to answer (as fastify's own handler).
  if (error.code === 'ECONNRESET' || socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const reply = asPmeError(error);
  const body = JSON.stringify(errorBody(reply));
  socket.end(
    `HTTP/1.1 ${reply.statusCode} ${STATUS_CODES[reply.statusCode]}\r\n` +
      `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Connection: close\r\n\r\n${body}`,
  );
}
