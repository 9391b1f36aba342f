/**
 * What the HTTP layer needs from the rest of the service. The API reads the engine and the
 * store only through this interface, so routes can be tested over real sockets against a
 * real engine, and the service wiring (src/service.ts) is the one place that adapts them.
 */

export interface Recommendation {
  item: string;
  score: number;
}

export interface RecommendResult {
  items: Recommendation[];
  /** Set when the user is unknown and the answer is the popularity ranking. */
  fallback: 'popularity' | null;
}

export interface TierReport {
  size: number;
  tokens: number;
  paramBytes: number;
  optimizerBytes: number;
  indexBytes: number;
  totalBytes: number;
}

export interface FieldReport {
  field: string;
  tokens: number;
  bytes: number;
  /** size -> tokens of this field in that tier */
  tiers: Record<string, number>;
}

export interface TiersReport {
  tiers: TierReport[];
  fields: FieldReport[];
  totalBytes: number;
  budgetBytes: number;
}

export interface TokenInfo {
  token: string;
  field: string;
  tier: number;
  size: number;
  frequency: number;
  lastSeen: number;
}

/** A re-pruning window as reported: kept bounded in memory by the engine. */
export interface PruneWindowReport {
  id: number;
  reason: string;
  startedAt: number;
  durationMs: number;
  searched: number;
  moved: number;
  demoted: number;
  evicted: number;
  aucBefore: number;
  aucAfter: number | null;
  before: TierReport[];
  after: TierReport[];
}

export interface Readiness {
  ready: boolean;
  modelLoaded: boolean;
  consumerLive: boolean;
  detail: string;
}

export interface ServiceApi {
  score(user: string, items: readonly string[], fields: Readonly<Record<string, string>>): number[];
  recommend(user: string, k: number, exclude: ReadonlySet<string>, excludeRecent: boolean): RecommendResult;
  /** Starts a window now; resolves with its id once started (not finished). Throws PME_ERR_PRUNE_RUNNING. */
  startPrune(reason: string): number;
  pruneWindows(): PruneWindowReport[];
  tiers(): TiersReport;
  token(field: string, value: string): TokenInfo | null;
  readiness(): Readiness;
  /** Prometheus text exposition of every metric. */
  metrics(): Promise<string>;
  metricsContentType: string;
  /** Called per request with the route and its duration, for the latency histograms. */
  observeRequest(route: string, method: string, status: number, seconds: number): void;
}
