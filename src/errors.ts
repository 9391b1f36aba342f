/**
 * The one catalog of coded errors. Every error the project raises on purpose is declared
 * here once: a code, a message template and, where it can reach an HTTP client, a status.
 * `test/errors.test.ts` keeps this catalog and the README's error table in agreement.
 */

interface ErrorSpec {
  /** Message template; `%s` slots are filled in order from the arguments. */
  message: string;
  /** HTTP status when the error reaches a client; 500 means "not the client's fault". */
  status: number;
  /** Whether the same call may succeed later (a broker not yet up, a snapshot in progress). */
  retriable: boolean;
}

export const ERRORS = {
  PME_ERR_CONFIG_INVALID: { message: 'invalid configuration: %s', status: 500, retriable: false },
  PME_ERR_BROKER_JAVA_MISSING: {
    message:
      '%s was not found: the local Kafka broker needs Java 17+ and Maven. Set KAFKA_BROKERS=host:port to use an existing cluster, or see docker/',
    status: 500,
    retriable: false,
  },
  PME_ERR_BROKER_START: { message: 'the local Kafka broker did not start: %s', status: 500, retriable: true },
  PME_ERR_KAFKA_UNREACHABLE: {
    message: 'no Kafka broker of %s answered in %s s (%s): start it, or raise --broker-wait-ms',
    status: 500,
    retriable: true,
  },
  PME_ERR_KAFKA_AUTH: {
    message:
      'Kafka at %s refused the connection (%s): check --kafka-sasl-mechanism, --kafka-sasl-username and the password, or --kafka-tls and its CA',
    status: 500,
    retriable: false,
  },
  PME_ERR_GROUP_TAKEN: {
    message:
      'consumer group %s has another trainer (%s): one trainer per group, else two models would each learn part of the stream and replicas would serve a mix of them. Stop the other, or use another --group',
    status: 500,
    retriable: true,
  },
  PME_ERR_DATA_FORMAT: {
    message: 'unknown data format "%s" (expected one of: %s)',
    status: 400,
    retriable: false,
  },
  PME_ERR_DATA_FILE: { message: 'cannot read data file %s: %s', status: 400, retriable: false },
  PME_ERR_STORE_BUDGET: { message: 'memory budget of %s bytes cannot hold %s', status: 507, retriable: true },
  PME_ERR_STORE_SIZE: { message: 'size %s is not on the size ladder (%s)', status: 400, retriable: false },
  PME_ERR_SNAPSHOT_CORRUPT: { message: 'snapshot %s is unusable: %s', status: 500, retriable: false },
  PME_ERR_UNAUTHORIZED: {
    message: 'this route needs "Authorization: Bearer <PME_ADMIN_TOKEN>"',
    status: 401,
    retriable: false,
  },
  PME_ERR_BAD_REQUEST: { message: '%s', status: 400, retriable: false },
  PME_ERR_NOT_FOUND: { message: '%s not found', status: 404, retriable: false },
  PME_ERR_NOT_READY: { message: 'the service is not ready: %s', status: 503, retriable: true },
  PME_ERR_INTERNAL: { message: 'internal error', status: 500, retriable: true },
  PME_ERR_PRUNE_RUNNING: { message: 'a prune window is already running', status: 409, retriable: true },
  PME_ERR_SUBSCRIPTION_EXISTS: {
    message: 'subscription %s exists: DELETE /v1/subscriptions/%s first to change it',
    status: 409,
    retriable: false,
  },
  PME_ERR_METHOD_NOT_ALLOWED: {
    message: 'method %s is not allowed on %s (allowed: %s)',
    status: 405,
    retriable: false,
  },
  PME_ERR_REQUEST_TIMEOUT: { message: 'the request did not arrive in time', status: 408, retriable: true },
  PME_ERR_BODY_TOO_LARGE: {
    message: 'the request body is larger than %s bytes',
    status: 413,
    retriable: false,
  },
  PME_ERR_UNSUPPORTED_MEDIA_TYPE: {
    message: 'content-type %s is not supported: send application/json',
    status: 415,
    retriable: false,
  },
  PME_ERR_HEADERS_TOO_LARGE: {
    message: 'the request header fields are larger than %s bytes',
    status: 431,
    retriable: false,
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export class PmeError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  readonly retriable: boolean;

  constructor(code: ErrorCode, ...args: Array<string | number>) {
    const spec: ErrorSpec = ERRORS[code];
    let i = 0;
    super(spec.message.replace(/%s/g, () => String(args[i++] ?? '')));
    this.name = 'PmeError';
    this.code = code;
    this.statusCode = spec.status;
    this.retriable = spec.retriable;
  }
}

/** True when `error` is a PmeError with the given code. */
export function isPmeError(error: unknown, code?: ErrorCode): error is PmeError {
  return error instanceof PmeError && (code === undefined || error.code === code);
}
