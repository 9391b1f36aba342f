/**
 * What an error reply says. Every error a request can meet (ours, fastify's, ajv's) becomes a
 * PmeError of the one catalog, sent as `{statusCode, code, error, message}`: fastify's own
 * codes never reach a client.
 */
import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyRequest, FastifySchemaValidationError } from 'fastify';
import { isPmeError, PmeError } from '../errors.js';

export interface ErrorBody {
  statusCode: number;
  code: string;
  /** The HTTP reason phrase of the status. */
  error: string;
  message: string;
}

export function errorBody(error: PmeError): ErrorBody {
  const status = error.statusCode;
  return {
    statusCode: status,
    code: error.code,
    error: STATUS_CODES[status] ?? 'Error',
    message: error.message,
  };
}

/**
 * fastify's schemaErrorFormatter: the first schema error as a PmeError naming the field by its
 * path (`body/items/0 must be string`), so a client knows what to fix.
 */
export function validationError(errors: FastifySchemaValidationError[], part: string): Error {
  const first = errors[0];
  const at = `${part}${first?.instancePath ?? ''}`;
  // ajv reports these two at the parent object, without the property's name in its message.
  const detail =
    first?.keyword === 'required'
      ? `${at}/${first.params.missingProperty} is required`
      : first?.keyword === 'additionalProperties'
        ? `${at}/${first.params.additionalProperty} is not allowed (no additional properties)`
        : `${at} ${first?.message ?? 'is invalid'}`;
  return new PmeError('PME_ERR_BAD_REQUEST', detail);
}

/** fastify's request errors by code; anything else of the client's is a plain bad request. */
const FASTIFY: Record<string, (error: FastifyError, request: FastifyRequest) => PmeError> = {
  FST_ERR_CTP_BODY_TOO_LARGE: (_e, request) =>
    new PmeError('PME_ERR_BODY_TOO_LARGE', request.routeOptions.bodyLimit),
  FST_ERR_CTP_INVALID_MEDIA_TYPE: (_e, request) =>
    new PmeError('PME_ERR_UNSUPPORTED_MEDIA_TYPE', request.headers['content-type'] ?? '(none)'),
  FST_ERR_CTP_INVALID_JSON_BODY: () => new PmeError('PME_ERR_BAD_REQUEST', 'the body is not valid JSON'),
  FST_ERR_CTP_EMPTY_JSON_BODY: () =>
    new PmeError('PME_ERR_BAD_REQUEST', 'the body is empty but its content-type is application/json'),
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: () =>
    new PmeError('PME_ERR_BAD_REQUEST', 'the body is not as long as its content-length says'),
};

/** The catalog error `error` stands for; null when it is none of the client's doing (a 500). */
export function catalogError(error: FastifyError, request: FastifyRequest): PmeError | null {
  if (isPmeError(error)) return error;
  const mapped = FASTIFY[error.code];
  if (mapped !== undefined) return mapped(error, request);
  const status = error.statusCode ?? 500;
  return status >= 400 && status < 500 ? new PmeError('PME_ERR_BAD_REQUEST', error.message) : null;
}
