/** JSON schemas of every request and response: fastify validates with them and the OpenAPI document is built from them. */

const tierReport = {
  type: 'object',
  properties: {
    size: { type: 'integer' },
    tokens: { type: 'integer' },
    paramBytes: { type: 'integer' },
    optimizerBytes: { type: 'integer' },
    indexBytes: { type: 'integer' },
    totalBytes: { type: 'integer' },
  },
} as const;

/** MemoryParts: what the store's budget counts, by part (they sum to the reply's `totalBytes`). */
export const memoryParts = {
  type: 'object',
  properties: {
    tiers: { type: 'integer' },
    tokenColumns: { type: 'integer' },
    keyIndex: { type: 'integer' },
  },
} as const;

/** UnbudgetedParts: what PME and the trainer keep outside the budget, by part (they sum to the
 *  reply's `unbudgetedBytes`). Typed arrays exact, Maps and strings estimated. */
export const unbudgetedParts = {
  type: 'object',
  properties: {
    pmeSketch: { type: 'integer' },
    pmeTokens: { type: 'integer' },
    keyCaches: { type: 'integer' },
    catalog: { type: 'integer' },
    itemCaches: { type: 'integer' },
  },
} as const;

const errorReply = {
  type: 'object',
  properties: {
    statusCode: { type: 'integer' },
    code: { type: 'string' },
    error: { type: 'string' },
    message: { type: 'string' },
  },
} as const;

/** Limits that keep one request's cost bounded. */
export const LIMITS = {
  maxItemsPerScore: 1000,
  maxK: 1000,
  maxExclude: 1000,
  maxIdLength: 256,
  maxFields: 64,
};

const id = { type: 'string', minLength: 1, maxLength: LIMITS.maxIdLength } as const;

export const scoreSchema = {
  summary: 'Probabilities that the user interacts with each item, in the order given',
  body: {
    type: 'object',
    required: ['user', 'items'],
    additionalProperties: false,
    properties: {
      user: id,
      items: { type: 'array', minItems: 1, maxItems: LIMITS.maxItemsPerScore, items: id },
      fields: {
        type: 'object',
        maxProperties: LIMITS.maxFields,
        additionalProperties: { type: 'string', maxLength: LIMITS.maxIdLength },
      },
    },
  },
  response: {
    200: { type: 'object', properties: { scores: { type: 'array', items: { type: 'number' } } } },
    400: errorReply,
  },
} as const;

export const recommendSchema = {
  summary: 'Top k items for the user, best first',
  querystring: {
    type: 'object',
    required: ['user'],
    additionalProperties: false,
    properties: {
      user: id,
      k: { type: 'integer', minimum: 1, maximum: LIMITS.maxK, default: 10 },
      exclude: { type: 'string', maxLength: LIMITS.maxExclude * (LIMITS.maxIdLength + 1) },
      excludeRecent: { type: 'boolean', default: false },
    },
  },
  response: {
    200: {
      type: 'object',
      properties: {
        items: {
          type: 'array',
          items: { type: 'object', properties: { item: { type: 'string' }, score: { type: 'number' } } },
        },
        fallback: { type: ['string', 'null'] },
      },
    },
    400: errorReply,
  },
} as const;

const windowReport = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    reason: { type: 'string' },
    startedAt: { type: 'number' },
    durationMs: { type: 'number' },
    searched: { type: 'integer' },
    moved: { type: 'integer' },
    demoted: { type: 'integer' },
    raised: { type: 'integer' },
    baseSize: { type: 'integer' },
    evicted: { type: 'integer' },
    probe: {
      type: ['object', 'null'],
      properties: {
        events: { type: 'integer' },
        aucBefore: { type: ['number', 'null'] },
        aucAfter: { type: ['number', 'null'] },
        loglossBefore: { type: 'number' },
        loglossAfter: { type: 'number' },
      },
    },
    aucBefore: { type: 'number' },
    aucAfter: { type: ['number', 'null'] },
    before: { type: 'array', items: tierReport },
    after: { type: 'array', items: tierReport },
  },
} as const;

export const pruneStartSchema = {
  summary: 'Start a re-pruning window now',
  body: {
    type: ['object', 'null'],
    additionalProperties: false,
    properties: { reason: { type: 'string', maxLength: 200 } },
  },
  response: {
    202: { type: 'object', properties: { window: { type: 'integer' }, status: { type: 'string' } } },
    401: errorReply,
    409: errorReply,
  },
} as const;

export const pruneListSchema = {
  summary: 'Past re-pruning windows, newest last, with memory per tier before and after',
  response: { 200: { type: 'object', properties: { windows: { type: 'array', items: windowReport } } } },
} as const;

export const tiersSchema = {
  summary: 'Memory and token counts per tier and per field',
  response: {
    200: {
      type: 'object',
      properties: {
        tiers: { type: 'array', items: tierReport },
        fields: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              field: { type: 'string' },
              tokens: { type: 'integer' },
              bytes: { type: 'integer' },
              tiers: { type: 'object', additionalProperties: { type: 'integer' } },
            },
          },
        },
        totalBytes: { type: 'integer' },
        memoryParts,
        budgetBytes: { type: 'number' },
        unbudgeted: unbudgetedParts,
        unbudgetedBytes: { type: 'integer' },
      },
    },
  },
} as const;

export const tokenSchema = {
  summary: 'Where one token lives: tier, size, frequency, last seen',
  params: {
    type: 'object',
    required: ['field', 'value'],
    properties: { field: id, value: id },
  },
  response: {
    200: {
      type: 'object',
      properties: {
        token: { type: 'string' },
        field: { type: 'string' },
        tier: { type: 'integer' },
        size: { type: 'integer' },
        frequency: { type: 'number' },
        lastSeen: { type: 'number' },
      },
    },
    404: errorReply,
  },
} as const;

const readiness = {
  type: 'object',
  properties: {
    ready: { type: 'boolean' },
    modelLoaded: { type: 'boolean' },
    consumerLive: { type: 'boolean' },
    detail: { type: 'string' },
  },
} as const;

export const readySchema = {
  summary: 'Whether the model is loaded and the consumer is live',
  response: { 200: readiness, 503: readiness },
} as const;

/** An events subscription's mapping (src/stream/json-mapping.ts): paths are dotted keys into a record. */
const mapping = {
  type: 'object',
  required: ['user', 'item', 'label'],
  additionalProperties: false,
  properties: {
    user: { type: 'string', description: 'PATH of the user id (a number becomes its text), e.g. `user.id`' },
    item: { type: 'string', description: 'PATH of the item id, e.g. `item`' },
    label: {
      type: 'string',
      description:
        'RULE: a PATH to a number in [0, 1]; `PATH >= 4` (`> < <= == !=`) against a number; `PATH == "click"` (`==`, `!=`) against a string; or `1` / `0`',
    },
    timestamp: {
      type: 'object',
      required: ['path', 'unit'],
      additionalProperties: false,
      description: 'Event time; absent (here or in a record): the service clock',
      properties: {
        path: { type: 'string' },
        unit: { type: 'string', description: '`ms`, `s` (since the epoch) or `iso` (ISO 8601 text)' },
      },
    },
    fields: {
      type: 'object',
      maxProperties: LIMITS.maxFields,
      description: 'Extra fields: field name -> PATH (each becomes a `name=value` token; absent: left out)',
      additionalProperties: { type: 'string' },
    },
  },
} as const;

/** An items subscription's mapping: a catalog record's item, fields and active flag. */
const itemMapping = {
  type: 'object',
  required: ['item'],
  additionalProperties: false,
  properties: {
    item: { type: 'string', description: 'PATH of the item id' },
    fields: {
      type: 'object',
      maxProperties: LIMITS.maxFields,
      description: 'Catalog fields: field name -> PATH (each becomes a `name=value` token of the item)',
      additionalProperties: { type: 'string' },
    },
    active: {
      // anyOf, not a type list: ajv's strict mode warns about union types.
      anyOf: [{ type: 'string' }, { type: 'boolean' }],
      description:
        'PATH of a boolean (absent or null in a record: true), or the constant true or false; default true. A null value (tombstone) deactivates the item its key names',
    },
  },
} as const;

const subscriptionProperties = {
  name: { type: 'string', description: 'Letters, digits, `_`, `-`, `.`; at most 64' },
  topic: {
    type: 'string',
    description: 'Kafka topic of the records (created when missing; compacted for kind `items`)',
  },
  kind: {
    type: 'string',
    enum: ['events', 'items'],
    description:
      '`events` (the default): interactions to learn. `items`: catalog records (item, fields, active), read whole at every start as the items topic is',
  },
  format: {
    type: 'string',
    description: '`json` (each value a JSON object) or `avro` (each value an Avro record of `schema`)',
  },
  mapping: {
    type: 'object',
    additionalProperties: true,
    description:
      'kind `events`: {user, item, label, timestamp?, fields?}; kind `items`: {item, fields?, active?}',
  },
  schema: {
    type: 'object',
    additionalProperties: true,
    description:
      'format `avro`: the record schema the mapping reads, inline (Avro JSON); the paths must be in it. Without `subject` the values are written in it; with `subject` it is the reader schema every writer is resolved to (Avro schema resolution; a writer that cannot be: DLQ `unknown-schema`)',
  },
  subject: {
    type: 'string',
    description:
      "format `avro`: a subject of the service's schema registry; values in the Confluent wire format, each decoded by the writer schema its id names (and resolved to `schema` when given)",
  },
  wire: {
    type: 'string',
    description:
      'format `avro`: `raw` (plain Avro binary, the default) or `confluent` (magic byte and schema id first; the id is not looked up)',
  },
} as const;

/** A subscription as answered (its mapping as given). */
const subscription = {
  type: 'object',
  required: ['name', 'topic', 'format', 'mapping'],
  properties: subscriptionProperties,
} as const;

/** A subscription as posted: its mapping checked by its kind. */
const subscriptionBody = {
  ...subscription,
  additionalProperties: false,
  // Checked before if / then / else (ajv's order), so an unknown kind is named as such.
  allOf: [{ properties: { kind: subscriptionProperties.kind } }],
  if: { properties: { kind: { const: 'items' } }, required: ['kind'] },
  // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if / then / else, never awaited
  then: { properties: { mapping: itemMapping } },
  else: { properties: { mapping } },
} as const;

export const subscriptionListSchema = {
  summary:
    "The topics read besides the interactions topic: users' own JSON or Avro topics, each with its mapping",
  response: {
    200: { type: 'object', properties: { subscriptions: { type: 'array', items: subscription } } },
  },
} as const;

export const subscribeSchema = {
  summary:
    "Read a topic of JSON or Avro records, mapped to interactions; its misfits go to `<topic>.dlq`. Durable (in the snapshot) once answered; the topic's history is learned",
  body: subscriptionBody,
  response: {
    201: {
      type: 'object',
      properties: {
        ...subscriptionProperties,
        created: { type: 'boolean', description: 'true when the topic did not exist and was created' },
      },
    },
    400: errorReply,
    401: errorReply,
    409: errorReply,
  },
} as const;

export const unsubscribeSchema = {
  summary:
    "Stop reading a subscription's topic (its offsets stay in the snapshot: added again, it resumes where it was)",
  params: {
    type: 'object',
    required: ['name'],
    properties: { name: { type: 'string', minLength: 1, maxLength: 64 } },
  },
  response: { 204: { type: 'null' }, 401: errorReply, 404: errorReply },
} as const;
