/**
 * One trainer per consumer group. Two trainers in one group would split its partitions and train
 * two models, each on part of the stream, and both publish under the same parameter keys, so
 * replicas would serve a last-writer-wins mix of them. Until training scales out by design, a
 * trainer refuses a group that another is in, and when two meet anyway (started at the same
 * moment), the newer one yields: it stops before its first commit, so the older one, which gets
 * the partitions back, misses nothing.
 *
 * Members are told apart by client id, which carries when the trainer started (`trainerClientId`);
 * a member whose client id does not parse (not one of ours) counts as older than any trainer.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Admin, MemberDescription } from 'kafkajs';
import { PmeError } from '../errors.js';

/** Time between two reads of the group while waiting for a killed predecessor to leave it. */
const POLL_MS = 500;
/** Beyond the session timeout: the coordinator expires a dead member on its own clock. */
const EXPIRY_SLACK_MS = 3000;

/**
 * A client id that says when this trainer started, for `seniority`: `pme-<start ms>-<pid>-<nonce>`
 * (the nonce tells apart two consumers one process starts in the same millisecond).
 */
export function trainerClientId(prefix: string, startedAt: number, pid: number): string {
  return `${prefix}-${startedAt}-${pid}-${randomBytes(3).toString('hex')}`;
}

/** When a member's trainer started, from its client id; -Infinity for a client not ours. */
function seniority(clientId: string): number {
  const match = /-(\d+)-\d+-[0-9a-f]+$/.exec(clientId);
  return match === null ? Number.NEGATIVE_INFINITY : Number(match[1]);
}

function describe(members: readonly MemberDescription[]): string {
  return members.map((m) => `${m.clientId} at ${m.clientHost}`).join(', ');
}

export class GroupFence {
  readonly #admin: Admin;
  readonly #groupId: string;
  readonly #clientId: string;
  readonly #sessionTimeoutMs: number;
  readonly #log: (line: string) => void;

  constructor(options: {
    admin: Admin;
    groupId: string;
    /** This trainer's client id, from trainerClientId. */
    clientId: string;
    sessionTimeoutMs: number;
    log: (line: string) => void;
  }) {
    this.#admin = options.admin;
    this.#groupId = options.groupId;
    this.#clientId = options.clientId;
    this.#sessionTimeoutMs = options.sessionTimeoutMs;
    this.#log = options.log;
  }

  /** Members of the group that are not this trainer (its own stale members share its client id). */
  async #others(): Promise<MemberDescription[]> {
    const { groups } = await this.#admin.describeGroups([this.#groupId]);
    const members = groups.find((g) => g.groupId === this.#groupId)?.members ?? [];
    return members.filter((m) => m.clientId !== this.#clientId);
  }

  #taken(others: readonly MemberDescription[]): PmeError {
    return new PmeError('PME_ERR_GROUP_TAKEN', this.#groupId, describe(others));
  }

  /**
   * Before joining: resolves once no other member is in the group. A trainer killed a moment ago
   * stays a member until its session times out, so members are given that long to leave (a
   * restart after kill -9 waits here instead of in the rebalance); then PME_ERR_GROUP_TAKEN.
   */
  async awaitSole(): Promise<void> {
    const deadline = performance.now() + this.#sessionTimeoutMs + EXPIRY_SLACK_MS;
    let others = await this.#others();
    if (others.length === 0) return;
    this.#log(
      `pme: consumer group ${this.#groupId} has other members (${describe(others)}): waiting up to ${Math.round((deadline - performance.now()) / 1000)} s for them to leave`,
    );
    while (others.length > 0) {
      if (performance.now() >= deadline) throw this.#taken(others);
      await sleep(POLL_MS);
      others = await this.#others();
    }
    this.#log(`pme: consumer group ${this.#groupId} is free`);
  }

  /**
   * After each join: the error to stop with when an older trainer is in the group too (null when
   * this one is the oldest, which says in one line that a newer one joined and will stop).
   */
  async check(): Promise<PmeError | null> {
    const others = await this.#others();
    if (others.length === 0) return null;
    const mine = seniority(this.#clientId);
    // Started in the same millisecond: the smaller client id counts as older, for both to agree.
    const older = others.filter((m) => {
      const theirs = seniority(m.clientId);
      return theirs < mine || (theirs === mine && m.clientId < this.#clientId);
    });
    if (older.length > 0) return this.#taken(older);
    this.#log(
      `pme: another trainer joined consumer group ${this.#groupId} (${describe(others)}); it is newer and stops`,
    );
    return null;
  }
}
