/**
 * Service configuration: one table of options, each read from a flag or an environment
 * variable, with its default, unit and cost documented once. Parsed and validated once at
 * start (rules across options included), then frozen. The README's configuration table is
 * generated from OPTIONS (`pme serve --help` prints it too), and a test keeps them equal.
 */
import { PME_DEFAULTS, pmeStartSize } from './engine/pme/options.js';
import { PmeError } from './errors.js';

type Kind = 'string' | 'int' | 'number' | 'list' | 'bool';

interface OptionSpec {
  env: string;
  kind: Kind;
  default: string;
  doc: string;
}

export const OPTIONS = {
  role: {
    env: 'PME_ROLE',
    kind: 'string',
    default: 'trainer',
    doc: '`trainer` consumes events, learns and publishes its parameters; `replica` follows the parameter topic and serves reads only.',
  },
  brokers: {
    env: 'KAFKA_BROKERS',
    kind: 'list',
    default: '',
    doc: 'Kafka bootstrap servers, comma separated. Empty: `pme up` starts a local broker; `pme serve` requires it.',
  },
  brokerWaitMs: {
    env: 'PME_BROKER_WAIT_MS',
    kind: 'int',
    default: '60000',
    doc: 'How long a starting service waits for its Kafka brokers to answer before it exits with `PME_ERR_KAFKA_UNREACHABLE` (0: one try).',
  },
  kafkaSaslMechanism: {
    env: 'PME_KAFKA_SASL_MECHANISM',
    kind: 'string',
    default: '',
    doc: 'SASL of every Kafka client: `plain`, `scram-sha-256` or `scram-sha-512` (empty: none). Needs `--kafka-sasl-username` and a password. Over a network, use it with `--kafka-tls` (SASL_SSL): PLAIN sends the password as is.',
  },
  kafkaSaslUsername: {
    env: 'PME_KAFKA_SASL_USERNAME',
    kind: 'string',
    default: '',
    doc: 'SASL user name.',
  },
  kafkaSaslPassword: {
    env: 'PME_KAFKA_SASL_PASSWORD',
    kind: 'string',
    default: '',
    doc: 'SASL password. Never logged nor shown; prefer the environment or `--kafka-sasl-password-file` to a flag (flags show in `ps`).',
  },
  kafkaSaslPasswordFile: {
    env: 'PME_KAFKA_SASL_PASSWORD_FILE',
    kind: 'string',
    default: '',
    doc: 'File holding the SASL password (one trailing newline ignored), e.g. a mounted secret; instead of `--kafka-sasl-password`.',
  },
  kafkaTls: {
    env: 'PME_KAFKA_TLS',
    kind: 'bool',
    default: 'false',
    doc: 'TLS to the brokers (SSL, or SASL_SSL with a SASL mechanism); the broker certificates are checked against `--kafka-tls-ca`, else the system CAs.',
  },
  kafkaTlsCa: {
    env: 'PME_KAFKA_TLS_CA',
    kind: 'string',
    default: '',
    doc: 'PEM file of the CA(s) that signed the broker certificates (empty: the system CAs). Needs `--kafka-tls true`.',
  },
  kafkaTlsCert: {
    env: 'PME_KAFKA_TLS_CERT',
    kind: 'string',
    default: '',
    doc: 'PEM file of a client certificate, for brokers that authenticate clients by certificate (mTLS); with `--kafka-tls-key`.',
  },
  kafkaTlsKey: {
    env: 'PME_KAFKA_TLS_KEY',
    kind: 'string',
    default: '',
    doc: "PEM file of the client certificate's private key (unencrypted).",
  },
  kafkaTlsRejectUnauthorized: {
    env: 'PME_KAFKA_TLS_REJECT_UNAUTHORIZED',
    kind: 'bool',
    default: 'true',
    doc: 'false accepts any broker certificate, unchecked: for a test cluster only.',
  },
  interactionsTopic: {
    env: 'PME_TOPIC_INTERACTIONS',
    kind: 'string',
    default: 'interactions',
    doc: 'Topic of `pme.Interaction` events (its DLQ is `<topic>.dlq`).',
  },
  itemsTopic: {
    env: 'PME_TOPIC_ITEMS',
    kind: 'string',
    default: 'items',
    doc: 'Compacted topic of `pme.Item` catalog records.',
  },
  subscriptions: {
    env: 'PME_SUBSCRIPTIONS',
    kind: 'string',
    default: '',
    doc: 'JSON file of an array of subscriptions, each as `POST /v1/subscriptions` takes it (`{ name, topic, kind, format, schema, subject, mapping }`: JSON or Avro, events or items, see "Your own topics"), read besides the interactions topic; added at start to those the snapshot holds (one of the same name is replaced by the file\'s). Empty: only the snapshot\'s and those added over HTTP.',
  },
  partitions: {
    env: 'PME_PARTITIONS',
    kind: 'int',
    default: '4',
    doc: 'Partitions when the service creates its topics.',
  },
  group: {
    env: 'PME_GROUP',
    kind: 'string',
    default: 'pme-trainer',
    doc: 'Kafka consumer group of the trainer.',
  },
  shareGroup: {
    env: 'PME_SHARE_GROUP',
    kind: 'bool',
    default: 'false',
    doc: 'false: a trainer waits at start for other members of its group to leave (a killed one does when its session times out), else exits with `PME_ERR_GROUP_TAKEN`; of two that meet, the newer stops. true: trainers split the partitions, each learning a model of its share (replicas of such a group serve a mix).',
  },
  host: { env: 'PME_HOST', kind: 'string', default: '127.0.0.1', doc: 'HTTP listen address.' },
  port: { env: 'PME_PORT', kind: 'int', default: '8080', doc: 'HTTP port (0 picks a free one).' },
  serveSyncMs: {
    env: 'PME_SERVE_SYNC_MS',
    kind: 'int',
    default: '0',
    doc: "0: the HTTP API answers on the training thread (training yields every ~1 ms). Above 0: it answers in a thread of its own from a read-only copy of the model synced every this many ms (reads lag training by about that; the copy costs the parameters' bytes again); for machines with cores to spare.",
  },
  adminToken: {
    env: 'PME_ADMIN_TOKEN',
    kind: 'string',
    default: '',
    doc: 'When set, mutating routes need `Authorization: Bearer <token>`.',
  },
  stateDir: {
    env: 'PME_STATE_DIR',
    kind: 'string',
    default: '.pme-state',
    doc: "Directory of snapshots (store, model, offsets). A restart resumes from the newest valid one, under the `--budget-bytes` and `--token-ttl-ms` it starts with (the ladder, seed and learner state are the snapshot's).",
  },
  snapshotIntervalMs: {
    env: 'PME_SNAPSHOT_INTERVAL_MS',
    kind: 'int',
    default: '5000',
    doc: 'Milliseconds between snapshots; offsets are committed only after a snapshot holds them, so this bounds re-reading after a crash.',
  },
  ladder: {
    env: 'PME_LADDER',
    kind: 'list',
    default: '0,2,4,8,16,32,64',
    doc: 'Allowed embedding sizes, ascending from 0; the last is D, the full (search) size.',
  },
  startSize: {
    env: 'PME_START_SIZE',
    kind: 'int',
    default: 'auto',
    doc: 'Size of a token on first sight, and the smallest a PME window prunes or cools a token to (under a binding budget a larger one keeps fewer tokens resident, each with more dims). With PME on, a window raises the size new tokens start at while the prune target has room for every token at a larger one, and steps it back down when memory runs short. `auto`: the smallest ladder size at or above `--prune-target` × D, at most 16 and below D (16 at the defaults, 8 at a target of 0.1); `stream-eval --pme` takes the same, and the figures in src/engine/pme/options.ts (pmeStartSize) are measured at it.',
  },
  budgetBytes: {
    env: 'PME_BUDGET_BYTES',
    kind: 'number',
    default: '268435456',
    doc: 'Hard memory budget of the embedding store, in bytes (parameters + optimizer state + index).',
  },
  tokenTtlMs: {
    env: 'PME_TOKEN_TTL_MS',
    kind: 'number',
    default: '86400000',
    doc: 'Tokens unseen this long (service clock) are evicted within about a second, idle or not (and at every prune window).',
  },
  evictedBuckets: {
    env: 'PME_EVICTED_BUCKETS',
    kind: 'int',
    default: '4096',
    doc: "Buckets of the table that keeps an evicted token's linear weight (and its optimizer state) for when its key comes back: a returning token starts from the bias it had learned, not from 0. 0 (off) or a power of two, 9 bytes a bucket (13 with `--linear-optimizer ftrl`) inside the budget, at most 1/16 of it; a key whose bucket a newer eviction took, or that shares it with another key (an 8-bit fingerprint tells them apart), starts from 0. On `bench:pme` at 10% of full's bytes it raised PME's progressive AUC by 0.0002 to 0.0004 on all three datasets (on `bench:planted`, whose returning users are rare, by 0.0000 to 0.0001). A restored snapshot keeps its own.",
  },
  pruneEveryEvents: {
    env: 'PME_PRUNE_EVERY_EVENTS',
    kind: 'int',
    default: '200000',
    doc: 'Run a re-pruning window after this many events (0: off).',
  },
  pruneEveryMs: {
    env: 'PME_PRUNE_EVERY_MS',
    kind: 'int',
    default: '300000',
    doc: 'Run a re-pruning window after this many milliseconds, idle or not (0: off).',
  },
  pruneTarget: {
    env: 'PME_PRUNE_TARGET',
    kind: 'number',
    default: '0.25',
    doc: 'What every window prunes the embeddings to, as a share of full size (every live token at D): PME frees memory before the budget binds. 1: prune only what the budget needs. A target that pruning cannot reach (the tokens a window does not prune already hold more) prunes only what the budget needs.',
  },
  pruneTargetBytes: {
    env: 'PME_PRUNE_TARGET_BYTES',
    kind: 'int',
    default: '0',
    doc: 'The same target in bytes of the store (the lower of the two counts; 0: none). The budget, less a tenth, caps both.',
  },
  hotThreshold: {
    env: 'PME_HOT_THRESHOLD',
    kind: 'number',
    default: String(PME_DEFAULTS.hotThreshold),
    doc: "PME: the decayed count (half-life 100,000 events) at which a token is searched at D; a window then prunes it to the size its importances earn. Lower searches more tokens: on long streams with many returning tokens that pays (the planted stream at 5M events, 10% of full's bytes: 0.6739 at 20, 0.6799 at 5), on short ones it costs a little (ml-latest-small at 25%: 0.7808 at 20, 0.7800 at 5). Figures in src/engine/pme/options.ts (hotThreshold). Above 1.",
  },
  negatives: {
    env: 'PME_NEGATIVES',
    kind: 'int',
    default: '0',
    doc: 'Negatives drawn from the catalog per positive, for positive-only streams (0: labels as given).',
  },
  crossUserItem: {
    env: 'PME_CROSS_USER_ITEM',
    kind: 'bool',
    default: 'false',
    doc: "Give every event one more token, the user and item pair's own linear weight (Vowpal Wabbit's `-q ui`), kept at size 0 and never sized by PME. It pays where pairs repeat (ad impressions): on `bench:quality`'s avazu-sample it raised the AUC by 0.002 (FM with PME at 25% 0.7024 to 0.7044, VW `-q ui` 0.7035). Where each pair comes once (ratings) it only costs a token per event, about 100 bytes, inside the budget: on ml-latest-small the FM with PME at 25% lost 0.002 and the logistic regression grew from 1.2 to 11.5 MiB. Drawn negatives never create one. Scores look each pair up; recommend reads the user's pairs from an index (about 8 bytes a pair and 100 a user, reported with the key caches), but the larger store slows it: over 100,000 items 5.2 to 8.7 ms in process on `bench:api --cross-user-item`.",
  },
  seed: { env: 'PME_SEED', kind: 'int', default: '1', doc: 'Seed of every random choice (init, sampling).' },
  model: {
    env: 'PME_MODEL',
    kind: 'string',
    default: 'fm',
    doc: 'The learner. The service runs `fm`, the factorization machine over the multi-size embeddings (its parameter topic and replicas carry FM parameters); `pme stream-eval` also runs `deepfm` and `lr`.',
  },
  learningRate: {
    env: 'PME_LEARNING_RATE',
    kind: 'number',
    default: '0.05',
    doc: 'Adagrad step size of the embedding rows, in an event of `--rate-tokens` tokens.',
  },
  rateTokens: {
    env: 'PME_RATE_TOKENS',
    kind: 'number',
    default: '5',
    doc: 'The rows of an event of n tokens step at the learning rate × this / n, and its linear weights too when n is above this (0: at the learning rates whatever n). Every Adagrad step moves each coordinate by about the rate, and all n tokens step, so without it an event moves its score more the more fields it has: full-size progressive AUC on criteo-sample (39 tokens an event) was 0.6644 at one rate for all, 0.6863 with the rows scaled, 0.7191 with the linear weights scaled too.',
  },
  linearLearningRate: {
    env: 'PME_LINEAR_LEARNING_RATE',
    kind: 'number',
    default: '0.2',
    doc: "Step size of the linear weights (one per token; the `lr` model has only these), in an event of at most `--rate-tokens` tokens: Adagrad's, or FTRL's alpha.",
  },
  projectionLearningRate: {
    env: 'PME_PROJECTION_LEARNING_RATE',
    kind: 'number',
    default: '0.01',
    doc: 'Step size of the projections P_s and the bias, which every token of a tier shares (so they see many more steps than any row).',
  },
  projection: {
    env: 'PME_PROJECTION',
    kind: 'string',
    default: 'nested',
    doc: 'How a row of size s below D reaches the shared D-space: `nested` (default), the first s dims of its vector, the rest 0, costing O(s) per token, with no projection to learn, publish or snapshot; or `learned`, through a projection P_s (s × D, starting as the first s rows of the identity) learned per tier, costing O(s · D) per token. Both learn about as well (figures in ARCHITECTURE.md, FmOptions.projection); nested trains 1.5 to 4 times faster per epoch. A snapshot continues only under the projection it was taken with.',
  },
  prefixLossWeight: {
    env: 'PME_PREFIX_LOSS_WEIGHT',
    kind: 'number',
    default: '0.2',
    doc: "Weight of each nested prefix's own loss (Matryoshka learning; `--projection nested` only): every event is also scored on its first s dims alone, for each size s below D that tokens hold (when more than one size is in use), and the rows learn from those scores too (the served score stays the full one). The leading dims then carry what most tokens share, so a token PME cuts to them keeps its scores; 0: the full score's loss alone. On the planted stream (5M events, seed 1) PME at 10% went from 0.6793 to 0.6851 with it (`npm run bench -- --only planted-5m`); figures in the README. `pme offline`'s fixed-size methods (uniform, MDE, pme-paper) learn without them: none of their tokens is ever cut.",
  },
  l2: {
    env: 'PME_L2',
    kind: 'number',
    default: '1e-6',
    doc: 'L2 on the rows and linear weights a step touches.',
  },
  adagradEpsilon: {
    env: 'PME_ADAGRAD_EPSILON',
    kind: 'number',
    default: '1e-7',
    doc: "Added to Adagrad's √accumulator in every step (rows, linear weights under Adagrad, projections, bias). Larger values damp a new coordinate's first steps to about rate × |g| / epsilon instead of the full rate: 0.1 raised `bench:quality`'s mean AUC by 0.002 but slowed learning on a short planted stream.",
  },
  linearOptimizer: {
    env: 'PME_LINEAR_OPTIMIZER',
    kind: 'string',
    default: 'adagrad',
    doc: "Update rule of the linear weights: `adagrad`, or `ftrl`, per-coordinate FTRL-Proximal (McMahan et al. 2013) with alpha = `--linear-learning-rate`, `--ftrl-beta`, `--ftrl-l1` and L2 = `--l2`; it keeps z and n, 8 bytes per token instead of Adagrad's 4. On `bench:quality` it gained under 0.001 of mean AUC. A snapshot continues only under the rule it was taken with.",
  },
  ftrlBeta: {
    env: 'PME_FTRL_BETA',
    kind: 'number',
    default: '0.1',
    doc: "FTRL's beta: a linear weight's step size is alpha / (beta + √(sum of its squared gradients)), and beta / alpha pulls a rare token's weight towards 0. With `--linear-optimizer ftrl`; 0.1 did better than the paper's 1 on `bench:quality`.",
  },
  ftrlL1: {
    env: 'PME_FTRL_L1',
    kind: 'number',
    default: '0',
    doc: "FTRL's L1: a linear weight whose accumulated z is at most this in size is exactly 0 (rare tokens stay out of the score). With `--linear-optimizer ftrl`.",
  },
  initStd: {
    env: 'PME_INIT_STD',
    kind: 'number',
    default: '0.01',
    doc: 'Standard deviation of the normal draw a new embedding row starts from (0: zeros; an FM whose rows all start at 0 never learns its interactions). 0.001, 0.03 and 0.1 did no better on `bench:quality`. A restored snapshot keeps its own.',
  },
  maxFieldNames: {
    env: 'PME_MAX_FIELD_NAMES',
    kind: 'int',
    default: '1024',
    doc: 'Most distinct field names over events and catalog; an event or item that would add one more goes to the DLQ (`field-limit`). Names are never forgotten, so this bounds what producers can make the service keep. At most 65534.',
  },
  maxKeyLength: {
    env: 'PME_MAX_KEY_LENGTH',
    kind: 'int',
    default: '1024',
    doc: "Longest user, item, field name or field value, in characters; a longer one's event or item goes to the DLQ (`oversized-key`). An event with more tokens than a model row holds (64: user, fields, item, the item's catalog fields, and with --cross-user-item the pair) goes there too (`too-many-fields`), and so does a label outside [0, 1] (`bad-label`).",
  },
  paramsTopic: {
    env: 'PME_TOPIC_PARAMS',
    kind: 'string',
    default: 'pme-params',
    doc: 'Compacted topic of parameter updates: the trainer publishes to it, replicas follow it.',
  },
  publishIntervalMs: {
    env: 'PME_PUBLISH_INTERVAL_MS',
    kind: 'int',
    default: '1000',
    doc: 'Milliseconds between parameter publishes by the trainer (changed rows, projections, tier moves, evictions); 0: no publishing.',
  },
  schemaRegistry: {
    env: 'PME_SCHEMA_REGISTRY_URL',
    kind: 'string',
    default: '',
    doc: 'Confluent schema registry URL; when set, values use its wire format (magic byte, schema id) and writer schemas are fetched by id.',
  },
  schemaRegistryUsername: {
    env: 'PME_SCHEMA_REGISTRY_USERNAME',
    kind: 'string',
    default: '',
    doc: 'User of HTTP basic auth to the schema registry (Confluent Cloud: the API key); credentials go here, not in the URL.',
  },
  schemaRegistryPassword: {
    env: 'PME_SCHEMA_REGISTRY_PASSWORD',
    kind: 'string',
    default: '',
    doc: 'Password of HTTP basic auth to the schema registry (Confluent Cloud: the API secret). Never logged nor shown.',
  },
} as const satisfies Record<string, OptionSpec>;

export type OptionName = keyof typeof OPTIONS;

type ValueOf<K extends Kind> = K extends 'int' | 'number'
  ? number
  : K extends 'list'
    ? string[]
    : K extends 'bool'
      ? boolean
      : string;

export type Config = { readonly [N in OptionName]: ValueOf<(typeof OPTIONS)[N]['kind']> };

/** `--interactions-topic` for `interactionsTopic`. */
export function flagName(name: string): string {
  return `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** The default of an option computed from the others once they are read (withComputed). */
const AUTO = 'auto';

function parseValue(name: string, spec: OptionSpec, raw: string): unknown {
  const where = `${flagName(name)} / ${spec.env}`;
  if (raw === AUTO && spec.default === AUTO) return AUTO;
  switch (spec.kind) {
    case 'int':
    case 'number': {
      const value = Number(raw);
      if (
        raw.trim() === '' ||
        !Number.isFinite(value) ||
        (spec.kind === 'int' && !Number.isInteger(value)) ||
        value < 0
      )
        throw new PmeError(
          'PME_ERR_CONFIG_INVALID',
          `${where} must be a non-negative ${spec.kind}, got "${raw}"`,
        );
      return value;
    }
    case 'list':
      return raw
        .split(',')
        .map((part) => part.trim())
        .filter((part) => part !== '');
    case 'bool':
      if (['true', '1'].includes(raw)) return true;
      if (['false', '0'].includes(raw)) return false;
      throw new PmeError('PME_ERR_CONFIG_INVALID', `${where} must be true or false, got "${raw}"`);
    default:
      return raw;
  }
}

/**
 * Reads options from flags (`--port 9000` or `--port=9000`), then the environment, then
 * defaults. Unknown flags are an error, so a typo never silently falls back to a default.
 */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Config {
  const byFlag = new Map(Object.keys(OPTIONS).map((name) => [flagName(name), name]));
  const fromFlags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const name = byFlag.get(flag);
    if (name === undefined) throw new PmeError('PME_ERR_CONFIG_INVALID', `unknown flag ${flag}`);
    const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined) throw new PmeError('PME_ERR_CONFIG_INVALID', `${flag} needs a value`);
    fromFlags.set(name, value);
  }
  const config: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(OPTIONS) as [string, OptionSpec][]) {
    const raw = fromFlags.get(name) ?? env[spec.env] ?? spec.default;
    config[name] = parseValue(name, spec, raw);
  }
  withComputed(config);
  validate(config as Config);
  validateLearner(config as Config, SERVICE_MODELS);
  return Object.freeze(config) as Config;
}

/** Options given as values (the library's form), by the table's names; the ladder may be numbers. */
export type ConfigValues = {
  readonly [N in OptionName]?: N extends 'ladder' | 'brokers' ? readonly (string | number)[] : Config[N];
};

/**
 * A Config from values by the table's names (what `createRecommender` and `startService` of the
 * library take), the others at their defaults, checked by the same rules as loadConfig.
 */
export function configFrom(values: ConfigValues = {}): Config {
  for (const name of Object.keys(values))
    if (!Object.hasOwn(OPTIONS, name))
      throw new PmeError(
        'PME_ERR_CONFIG_INVALID',
        `unknown option ${name} (the options are in the README's table)`,
      );
  const config: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(OPTIONS) as [string, OptionSpec][]) {
    const given = (values as Record<string, unknown>)[name];
    config[name] = given === undefined ? parseValue(name, spec, spec.default) : checkValue(name, spec, given);
  }
  withComputed(config);
  validate(config as Config);
  validateLearner(config as Config, SERVICE_MODELS);
  return Object.freeze(config) as Config;
}

/** A value given as such (not as text) checked against its option's kind. */
function checkValue(name: string, spec: OptionSpec, value: unknown): unknown {
  const fits =
    spec.kind === 'list'
      ? Array.isArray(value) && value.every((v) => typeof v === 'string' || typeof v === 'number')
      : spec.kind === 'bool'
        ? typeof value === 'boolean'
        : spec.kind === 'string'
          ? typeof value === 'string'
          : typeof value === 'number' &&
            Number.isFinite(value) &&
            value >= 0 &&
            (spec.kind === 'number' || Number.isInteger(value));
  if (!fits) {
    const wanted = {
      list: 'an array',
      bool: 'a boolean',
      string: 'a string',
      int: 'an integer >= 0',
      number: 'a number >= 0',
    }[spec.kind];
    throw new PmeError('PME_ERR_CONFIG_INVALID', `${name} must be ${wanted}, got ${JSON.stringify(value)}`);
  }
  return spec.kind === 'list' ? (value as unknown[]).map(String) : value;
}

/** The options of the learner, named as in the table: the service, `pme stream-eval`,
 *  `pme offline` and the library all take these. */
export const LEARNER_OPTIONS = [
  'model',
  'learningRate',
  'rateTokens',
  'linearLearningRate',
  'projectionLearningRate',
  'projection',
  'prefixLossWeight',
  'l2',
  'adagradEpsilon',
  'linearOptimizer',
  'ftrlBeta',
  'ftrlL1',
  'initStd',
] as const;
export type LearnerConfig = Pick<Config, (typeof LEARNER_OPTIONS)[number]>;
/** The service's models: its parameter topic and replicas carry an FM's parameters. */
const SERVICE_MODELS = ['fm'] as const;

/**
 * The learner options of a command (`--learning-rate 0.1`, by flag name without `--`; not the
 * environment, so a run is reproduced by its command line), parsed and checked as the
 * service's are; `models` are the model kinds the command runs.
 */
export function learnerFlags(
  flags: Readonly<Record<string, string | undefined>>,
  models: readonly string[],
): LearnerConfig {
  const learner: Record<string, unknown> = {};
  for (const name of LEARNER_OPTIONS) {
    const spec: OptionSpec = OPTIONS[name];
    learner[name] = parseValue(name, spec, flags[flagName(name).slice(2)] ?? spec.default);
  }
  validateLearner(learner as LearnerConfig, models);
  return Object.freeze(learner) as LearnerConfig;
}

/** Usage lines of the learner's numeric flags (`--model` each command words itself), from the
 *  table: flag and placeholder, then the meaning and default from column `column`. */
export function learnerUsage(column: number): string {
  return LEARNER_OPTIONS.filter((name) => name !== 'model')
    .map((name) => {
      const flag = `  ${flagName(name)} X`;
      const lines = wrap(`${OPTIONS[name].doc} Default ${OPTIONS[name].default}`, 100 - column);
      const indent = ' '.repeat(column);
      const first =
        flag.length < column ? `${flag.padEnd(column)}${lines[0]}` : `${flag}\n${indent}${lines[0]}`;
      return [first, ...lines.slice(1).map((line) => `${indent}${line}`)].join('\n');
    })
    .join('\n');
}

/** `text` in lines of at most `width` characters, broken at spaces. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  return [...lines, line];
}

/** The flags of learnerFlags, for a command's parser. */
export const LEARNER_FLAGS = LEARNER_OPTIONS.map((name) => flagName(name).slice(2));

/** What `--linear-optimizer` takes (the model's LinearOptimizer; config.ts imports no engine). */
const LINEAR_OPTIMIZERS = ['adagrad', 'ftrl'] as const;
/** What `--projection` takes (FmOptions.projection). */
const PROJECTIONS = ['learned', 'nested'] as const;

/** The model options (FmOptions' names) of a learner config; the store's (initStd) are apart. */
export function modelOptionsOf(learner: LearnerConfig): {
  learningRate: number;
  rateTokens: number;
  linearLearningRate: number;
  projectionLearningRate: number;
  projection: (typeof PROJECTIONS)[number];
  prefixLossWeight: number;
  l2: number;
  epsilon: number;
  linearOptimizer: (typeof LINEAR_OPTIMIZERS)[number];
  ftrlBeta: number;
  ftrlL1: number;
} {
  const { learningRate, rateTokens, linearLearningRate, projectionLearningRate, l2, adagradEpsilon } =
    learner;
  return {
    learningRate,
    rateTokens,
    linearLearningRate,
    projectionLearningRate,
    // validateLearner checked it.
    projection: learner.projection as (typeof PROJECTIONS)[number],
    prefixLossWeight: learner.prefixLossWeight,
    l2,
    epsilon: adagradEpsilon,
    // validateLearner checked it.
    linearOptimizer: learner.linearOptimizer as (typeof LINEAR_OPTIMIZERS)[number],
    ftrlBeta: learner.ftrlBeta,
    ftrlL1: learner.ftrlL1,
  };
}

function validateLearner(learner: LearnerConfig, models: readonly string[]): void {
  if (!models.includes(learner.model))
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `--model must be ${models.length === 1 ? models[0] : `one of ${models.join(', ')}`} here, got "${learner.model}"${models === SERVICE_MODELS ? ' (deepfm and lr run in `pme stream-eval`)' : ''}`,
    );
  for (const name of [
    'learningRate',
    'linearLearningRate',
    'projectionLearningRate',
    'adagradEpsilon',
  ] as const)
    if (!(learner[name] > 0))
      throw new PmeError('PME_ERR_CONFIG_INVALID', `${flagName(name)} must be above 0, got ${learner[name]}`);
  if (!(PROJECTIONS as readonly string[]).includes(learner.projection))
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `${flagName('projection')} must be ${PROJECTIONS.join(' or ')}, got "${learner.projection}"`,
    );
  if (!(LINEAR_OPTIMIZERS as readonly string[]).includes(learner.linearOptimizer))
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `${flagName('linearOptimizer')} must be ${LINEAR_OPTIMIZERS.join(' or ')}, got "${learner.linearOptimizer}"`,
    );
}

/** Options left at `auto` take the value the others give them: the start size follows the ladder
 *  and the prune target, as `stream-eval --pme` does (a fixed 16 was too large a floor at a
 *  target of 0.1, and was off the ladder of `0,4,8,32`). */
function withComputed(config: Record<string, unknown>): void {
  if (config.startSize === AUTO)
    config.startSize = pmeStartSize((config.ladder as string[]).map(Number), config.pruneTarget as number);
}

/** `--hot-threshold` (service and `stream-eval`): above the count under which a token has cooled
 *  (PmeOptions.coldThreshold), which PME's own check would name instead of the flag. */
export function checkHotThreshold(value: number, given: string = String(value)): number {
  if (!(value > PME_DEFAULTS.coldThreshold))
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `--hot-threshold must be above ${PME_DEFAULTS.coldThreshold} (the count under which a token has cooled), got ${given}`,
    );
  return value;
}

function validate(config: Config): void {
  const ladder = config.ladder.map(Number);
  if (ladder.some((s) => !Number.isInteger(s) || s < 0) || ladder[0] !== 0)
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `--ladder must be integers starting at 0, got ${config.ladder}`,
    );
  for (let i = 1; i < ladder.length; i++)
    if (ladder[i] <= ladder[i - 1])
      throw new PmeError('PME_ERR_CONFIG_INVALID', `--ladder must be ascending, got ${config.ladder}`);
  if (!ladder.includes(config.startSize))
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `--start-size ${config.startSize} is not on the ladder ${ladder}`,
    );
  if (config.port > 65535)
    throw new PmeError('PME_ERR_CONFIG_INVALID', `--port ${config.port} is not a port`);
  if (config.partitions < 1) throw new PmeError('PME_ERR_CONFIG_INVALID', '--partitions must be at least 1');
  if (config.role !== 'trainer' && config.role !== 'replica')
    throw new PmeError('PME_ERR_CONFIG_INVALID', `--role must be trainer or replica, got "${config.role}"`);
  if (config.maxFieldNames > 65534)
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `--max-field-names must be at most 65534, got ${config.maxFieldNames}`,
    );
  if (config.maxKeyLength < 1)
    throw new PmeError('PME_ERR_CONFIG_INVALID', '--max-key-length must be at least 1');
  if (!(config.pruneTarget > 0 && config.pruneTarget <= 1))
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `--prune-target must be in (0, 1], got ${config.pruneTarget}`,
    );
  checkHotThreshold(config.hotThreshold);
  if (config.snapshotIntervalMs < 100)
    throw new PmeError('PME_ERR_CONFIG_INVALID', '--snapshot-interval-ms must be at least 100');
  validateKafkaSecurity(config);
  validateSchemaRegistry(config);
}

/** Rules across the SASL and TLS options; the files are read at start (kafkaConnection). No secret in a message. */
function validateKafkaSecurity(config: Config): void {
  const mechanisms = ['plain', 'scram-sha-256', 'scram-sha-512'];
  const mechanism = config.kafkaSaslMechanism;
  const hasPassword = config.kafkaSaslPassword !== '' || config.kafkaSaslPasswordFile !== '';
  if (mechanism !== '' && !mechanisms.includes(mechanism))
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `--kafka-sasl-mechanism must be one of ${mechanisms.join(', ')} (or empty), got "${mechanism}"`,
    );
  if (mechanism === '' && (config.kafkaSaslUsername !== '' || hasPassword))
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      'a SASL user name or password is set but --kafka-sasl-mechanism is not (plain, scram-sha-256 or scram-sha-512)',
    );
  if (mechanism !== '' && config.kafkaSaslUsername === '')
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `--kafka-sasl-mechanism ${mechanism} needs --kafka-sasl-username`,
    );
  if (mechanism !== '' && !hasPassword)
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `--kafka-sasl-mechanism ${mechanism} needs --kafka-sasl-password or --kafka-sasl-password-file`,
    );
  if (config.kafkaSaslPassword !== '' && config.kafkaSaslPasswordFile !== '')
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      'give --kafka-sasl-password or --kafka-sasl-password-file, not both',
    );
  if (!config.kafkaTls)
    for (const [flag, value] of [
      ['--kafka-tls-ca', config.kafkaTlsCa],
      ['--kafka-tls-cert', config.kafkaTlsCert],
      ['--kafka-tls-key', config.kafkaTlsKey],
    ])
      if (value !== '') throw new PmeError('PME_ERR_CONFIG_INVALID', `${flag} needs --kafka-tls true`);
  if ((config.kafkaTlsCert === '') !== (config.kafkaTlsKey === ''))
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      config.kafkaTlsCert === ''
        ? '--kafka-tls-key needs --kafka-tls-cert (the client certificate it belongs to)'
        : '--kafka-tls-cert needs --kafka-tls-key (its private key)',
    );
}

function validateSchemaRegistry(config: Config): void {
  const hasUser = config.schemaRegistryUsername !== '';
  if (hasUser !== (config.schemaRegistryPassword !== ''))
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      '--schema-registry-username and --schema-registry-password go together',
    );
  if (hasUser && config.schemaRegistry === '')
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      'schema registry credentials are set but --schema-registry is not',
    );
  if (config.schemaRegistry === '') return;
  let url: URL;
  try {
    url = new URL(config.schemaRegistry);
  } catch {
    throw new PmeError('PME_ERR_CONFIG_INVALID', '--schema-registry must be an http(s) URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new PmeError('PME_ERR_CONFIG_INVALID', '--schema-registry must be an http(s) URL');
  // The URL shows in logs and errors: credentials in it would too (and fetch refuses them).
  if (url.username !== '' || url.password !== '')
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      '--schema-registry must not hold credentials: use --schema-registry-username and --schema-registry-password',
    );
}

/** The Authorization header of the schema registry's basic auth, or undefined without credentials. */
export function schemaRegistryAuth(config: Config): string | undefined {
  if (config.schemaRegistryUsername === '') return undefined;
  const pair = `${config.schemaRegistryUsername}:${config.schemaRegistryPassword}`;
  return `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
}

/** The configuration table, as Markdown (README) or plain text (`--help`). */
export function describeOptions(markdown: boolean): string {
  const rows = (Object.entries(OPTIONS) as [string, OptionSpec][]).map(([name, spec]) =>
    markdown
      ? `| \`${flagName(name)}\` | \`${spec.env}\` | ${spec.default === '' ? '(empty)' : `\`${spec.default}\``} | ${spec.doc} |`
      : `  ${flagName(name).padEnd(24)} ${spec.env.padEnd(26)} default: ${spec.default || '(empty)'}\n      ${spec.doc}`,
  );
  return markdown
    ? ['| flag | environment | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n')
    : rows.join('\n');
}
