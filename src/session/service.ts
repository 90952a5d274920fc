import { hash, randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { StoreUnavailableError } from '../store/types.ts';
import type { TokenSet } from '../oidc/flows.ts';
import type { PayloadUpdate, SessionRecord, SessionStore } from '../store/types.ts';
import { TtlCache } from './cache.ts';
import type { CookieSealer, UnsealedCookie } from './cookieSealer.ts';
import { RefreshUnavailableError, SessionEndedError } from './errors.ts';
import { LEASE_MS, LEASE_POLL_MS, LEASE_RENEW_EVERY_MS, LeaseWatch, longestRefreshMs, TAKEOVER_WATCH_MS, UNWRITTEN_DRAIN_MS, WRITE_RETRY_MAX_MS, WRITE_RETRY_MIN_MS } from './lease.ts';
import { sessionEndsAt, type ActiveSession, type SessionClaims, type SessionPayload } from './model.ts';
import type { PayloadCipher } from './payloadCipher.ts';

export interface SessionLifetimes {
  absoluteLifetimeSec: number;
  idleLifetimeSec: number;
  refreshSkewSec: number;
  sweepBatchSize: number;
  /** Most live sessions of one user (issuer + sub) per client and tenant; 0 or absent: no limit. */
  maxPerUser?: number;
}

/** What a refresh knows of the session it refreshes. */
export interface RefreshContext {
  /** Selects the IdP of a client that serves several tenants. */
  tenant: string | null;
  /** The session's issuer, as its ID token named it (one directory of a multi-tenant issuer). */
  issuer: string;
  /** A new ID token must be about the same subject. */
  sub: string;
  /** The current (validated at its time) ID token, whose claims stand when the IdP sends no new one. */
  idToken: string | undefined;
  claims: SessionClaims;
}

/** The refreshed tokens and the user facts recomputed from them. */
export interface Refreshed {
  tokens: TokenSet;
  claims: SessionClaims;
}

/**
 * Refreshes tokens at the client's IdP (src/oidc/identity.ts); throws OidcError (kind `invalid_grant` or
 * `rejected` ends the session).
 */
export type Refresher = (clientId: string, refreshToken: string, session: RefreshContext) => Promise<Refreshed>;

export interface NewSession {
  clientId: string;
  tenant: string | null;
  issuer: string;
  sub: string;
  sid: string | null;
  tokens: TokenSet;
  claims: SessionClaims;
  userAgent: string | null;
  /** SessionPayload.publicPath. */
  publicPath?: string;
}

export interface SessionServiceDeps {
  store: SessionStore;
  sealer: CookieSealer;
  cipher: PayloadCipher;
  refresher: Refresher;
  lifetimes: SessionLifetimes;
  log: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
  /** How long a resolved session may be served from memory; invalidations from any instance evict it. */
  cacheTtlMs?: number;
  /**
   * `--oidc_timeout`: the longest one call to the IdP may take. A refresh is at most REFRESH_IDP_CALLS
   * calls (src/session/lease.ts): its lease is renewed no longer than longestRefreshMs of this.
   */
  oidcTimeoutMs?: number;
  /** Observers for metrics. */
  onRefresh?: (clientId: string, outcome: 'success' | 'invalid_grant' | 'unavailable') => void;
  now?: () => number;
}

interface Cached {
  record: SessionRecord;
  payload: SessionPayload;
}

const SESSION_ID_BYTES = 32;

/** `resolveInMemory`: the answer needs the store. */
export const NOT_IN_MEMORY: unique symbol = Symbol('not in memory');
/**
 * `expect.tenant` of `resolve`: the session's own tenant, whichever it is (the caller checks that the client
 * still serves it): a tenant-scoped request without the tenant header acts in the tenant of its session.
 */
export const ANY_TENANT: unique symbol = Symbol('any tenant');
/** What a resolved session must belong to: a client, and a tenant (null: none) or ANY_TENANT. */
export interface SessionExpectation {
  clientId: string;
  tenant: string | null | typeof ANY_TENANT;
}
/**
 * How long one sweep batch should take, per backend. SQLite's runs on the event loop (measured ~7.5 µs
 * per deleted session at 1M rows, so ~400 per batch); PostgreSQL's and Redis' run in the server and only
 * hold locks or the Redis thread that long. See docs/fleet.md for the measurements.
 */
const SWEEP_BATCH_TARGET_MS: Record<SessionStore['kind'], number> = { sqlite: 3, postgresql: 10, redis: 20 };
const SWEEP_FIRST_BATCH = 100;
const SWEEP_MIN_BATCH = 10;
/** Pause after a batch, as a multiple of its duration: 2 leaves the sweeper a third of the time. */
const SWEEP_PAUSE_FACTOR = 2;
const SWEEP_MAX_PAUSE_MS = 250;
/**
 * New tokens this instance got from the IdP but could not write to the store yet (it was unreachable).
 * They are served to this instance's requests and written as soon as the store is back; meanwhile the
 * lease stays this instance's, so nobody presents the refresh token they replaced.
 */
interface Unwritten {
  /** The lease the refresh ran under: the write lands only while it is still ours. */
  leaseId: string;
  record: SessionRecord;
  payload: SessionPayload;
  update: PayloadUpdate;
  written: Promise<void>;
}

/** The access token's lifetime as issued, when the IdP said (`expires_in`). */
function lifetimeOf(accessExpiresAt: number | null, receivedAt: number): number | undefined {
  return accessExpiresAt !== null && accessExpiresAt > receivedAt ? accessExpiresAt - receivedAt : undefined;
}

/**
 * Creates, resolves, refreshes and ends sessions. The browser holds only a sealed random id; the store
 * holds its SHA-256 hash and the tokens encrypted. Refresh is single-flight within the process (one
 * promise per session) and across instances (a lease in the store plus optimistic versioning), so an IdP
 * that rotates refresh tokens never sees the same refresh token twice.
 */
export class SessionService {
  readonly #d: SessionServiceDeps;
  readonly #cache: TtlCache<Cached>;
  readonly #refreshing = new Map<string, Promise<string>>();
  /** Loads from the store in flight, one per session (however many requests wait for it). */
  readonly #loading = new Map<string, Promise<Cached | undefined>>();
  /** Sessions evicted while their load was in flight: what that load read may predate the eviction. */
  readonly #staleLoads = new Set<string>();
  readonly #unwritten = new Map<string, Unwritten>();
  readonly #now: () => number;
  #closed = false;

  constructor(deps: SessionServiceDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
    this.#cache = new TtlCache(deps.cacheTtlMs ?? 5_000, 100_000);
    deps.store.onInvalidation((hashes) => {
      for (const h of hashes) this.#evict(h);
    });
  }

  static hashId(id: Buffer): string {
    // One-shot hash: no Hash object per call (this runs on every proxied request).
    return hash('sha256', id, 'hex');
  }

  /** The cookie purpose binds a sealed session id to one client: another client's cookie never resolves. */
  static cookiePurpose(clientId: string): string {
    return `session:${clientId}`;
  }

  /** Seals a session id for its cookie. */
  sealCookie(session: Pick<ActiveSession, 'id' | 'record'>): string {
    return this.#d.sealer.seal(SessionService.cookiePurpose(session.record.clientId), session.id, session.record.expiresAt);
  }

  /**
   * Stores a new session under a fresh random id (never one the browser offered: no fixation). With a
   * per-user limit, the user's oldest sessions of this client and tenant beyond it end.
   */
  async create(input: NewSession): Promise<{ cookieValue: string; session: ActiveSession }> {
    const now = this.#now();
    const id = randomBytes(SESSION_ID_BYTES);
    const idHash = SessionService.hashId(id);
    const payload: SessionPayload = { accessToken: input.tokens.accessToken, claims: input.claims };
    const lifetime = lifetimeOf(input.tokens.accessExpiresAt, now);
    if (lifetime !== undefined) payload.accessLifetimeMs = lifetime;
    if (input.tokens.refreshToken) payload.refreshToken = input.tokens.refreshToken;
    if (input.tokens.idToken) payload.idToken = input.tokens.idToken;
    if (input.tokens.scope) payload.scope = input.tokens.scope;
    if (input.publicPath !== undefined) payload.publicPath = input.publicPath;
    if (input.tokens.refreshExpiresAt !== null) payload.refreshExpiresAt = input.tokens.refreshExpiresAt;
    const expiresAt = now + this.#d.lifetimes.absoluteLifetimeSec * 1000;
    const record: SessionRecord = {
      idHash,
      clientId: input.clientId,
      tenant: input.tenant,
      issuer: input.issuer,
      sub: input.sub,
      sid: input.sid,
      payload: this.#encrypt(payload, idHash),
      accessExpiresAt: input.tokens.accessExpiresAt,
      createdAt: now,
      lastUsedAt: now,
      expiresAt,
      idleExpiresAt: Math.min(expiresAt, now + this.#d.lifetimes.idleLifetimeSec * 1000),
      version: 1,
      userAgent: input.userAgent ? input.userAgent.slice(0, 512) : null,
    };
    await this.#d.store.create(record);
    await this.#endSessionsBeyondLimit(record);
    const session: ActiveSession = { id, idHash, record, payload, resealCookie: false };
    return { cookieValue: this.sealCookie(session), session };
  }

  /**
   * --max_sessions_per_user: ends the oldest live sessions of the new session's user, client and tenant
   * beyond the limit (never the new one), everywhere. A failure leaves them (the new session stands; the
   * next login tries again): a login never fails for it.
   */
  async #endSessionsBeyondLimit(created: SessionRecord): Promise<void> {
    const max = this.#d.lifetimes.maxPerUser ?? 0;
    if (max <= 0) return;
    try {
      const now = this.#now();
      const live = (await this.#d.store.listBySubject(created.issuer, created.sub)).filter(
        (r) => r.clientId === created.clientId && r.tenant === created.tenant && r.expiresAt > now && r.idleExpiresAt > now && r.idHash !== created.idHash,
      );
      const excess = live.length + 1 - max;
      if (excess <= 0) return;
      live.sort((a, b) => a.createdAt - b.createdAt || (a.idHash < b.idHash ? -1 : 1));
      const ended: string[] = [];
      for (const record of live.slice(0, excess)) {
        if (await this.#d.store.delete(record.idHash)) ended.push(record.idHash);
      }
      await this.#invalidate(ended);
      if (ended.length > 0) this.#d.log.info({ clientId: created.clientId, sub: created.sub, ended: ended.length, max }, 'ended the oldest sessions of a user beyond the per-user limit');
    } catch (err) {
      this.#d.log.warn({ clientId: created.clientId, reason: (err as Error).message }, 'could not apply the per-user session limit');
    }
  }

  /**
   * The live session behind a cookie value for `clientId` (and `tenant`), or undefined for a missing,
   * forged, foreign, expired or deleted one. Extends the idle lifetime (rolling) at most every
   * tenth of it, so steady traffic does not write on every request.
   */
  async resolve(cookieValue: string | undefined, expect: SessionExpectation): Promise<ActiveSession | undefined> {
    if (!cookieValue) return undefined;
    const now = this.#now();
    const unsealed = this.#unseal(cookieValue, expect.clientId, now);
    if (!unsealed) return undefined;
    const idHash = SessionService.hashId(unsealed.data);
    let entry = this.#cache.get(idHash, now);
    if (entry) this.#refreshAhead(idHash, now);
    else entry = await this.#loadOnce(idHash, now);
    return entry ? this.#activate(entry, unsealed, idHash, expect, now) : undefined;
  }

  /**
   * `resolve` without waiting, when the answer is in memory: the cookie unseals (remembered or
   * verified here) and its session is in the session cache. NOT_IN_MEMORY when only the store can tell
   * (then call `resolve`). The proxy's path for a browser's steady stream of API calls: no promise.
   */
  resolveInMemory(cookieValue: string, expect: SessionExpectation): ActiveSession | undefined | typeof NOT_IN_MEMORY {
    const now = this.#now();
    const unsealed = this.#unseal(cookieValue, expect.clientId, now);
    if (!unsealed) return undefined;
    const idHash = SessionService.hashId(unsealed.data);
    const entry = this.#cache.get(idHash, now);
    if (!entry) return NOT_IN_MEMORY;
    this.#refreshAhead(idHash, now);
    return this.#activate(entry, unsealed, idHash, expect, now);
  }

  #unseal(cookieValue: string, clientId: string, now: number): UnsealedCookie | undefined {
    const unsealed = this.#d.sealer.unseal(SessionService.cookiePurpose(clientId), cookieValue, now);
    return unsealed && unsealed.data.length === SESSION_ID_BYTES ? unsealed : undefined;
  }

  /** The session of a loaded entry, if it is the expected client's and tenant's and still live. */
  #activate(entry: Cached, unsealed: UnsealedCookie, idHash: string, expect: SessionExpectation, now: number): ActiveSession | undefined {
    const { record } = entry;
    if (record.clientId !== expect.clientId || (expect.tenant !== ANY_TENANT && record.tenant !== expect.tenant)) return undefined;
    if (sessionEndsAt(record, entry.payload) <= now || record.idleExpiresAt <= now) {
      this.#evict(idHash);
      return undefined;
    }
    this.#maybeTouch(record, now);
    return { id: unsealed.data, idHash, record, payload: entry.payload, resealCookie: unsealed.stale };
  }

  /** The session's access token when it needs no refresh yet (else undefined: call `accessToken`). */
  currentAccessToken(session: ActiveSession): string | undefined {
    return this.#needsRefresh(session.record, session.payload, this.#now()) ? undefined : session.payload.accessToken;
  }

  /** A usable access token, refreshed first when it is due (see `#needsRefresh`). */
  async accessToken(session: ActiveSession): Promise<string> {
    if (!this.#needsRefresh(session.record, session.payload, this.#now())) return session.payload.accessToken;
    let pending = this.#refreshing.get(session.idHash);
    if (!pending) {
      pending = this.#refresh(session).finally(() => this.#refreshing.delete(session.idHash));
      this.#refreshing.set(session.idHash, pending);
    }
    return pending;
  }

  /** Deletes a session everywhere (store and every instance's cache). */
  async destroy(idHash: string): Promise<boolean> {
    const deleted = await this.#d.store.delete(idHash);
    await this.#invalidate([idHash]);
    return deleted;
  }

  /** Deletes sessions found by an external event (back-channel logout), across instances. */
  async destroyMany(idHashes: string[]): Promise<void> {
    if (idHashes.length > 0) await this.#invalidate(idHashes);
  }

  /**
   * Deletes expired sessions in batches; returns how many. The batch size adapts so that a batch takes
   * about SWEEP_BATCH_TARGET_MS (never more sessions than the configured sweepBatchSize): on SQLite a
   * batch runs synchronously on the event loop, so its duration is what a request arriving meanwhile
   * waits; on PostgreSQL and Redis short batches keep row locks and Lua scripts short. After each batch
   * the sweeper pauses twice as long as the batch took, so it never takes more than a third of the event
   * loop (SQLite), of the Redis thread or of a database core, whatever the backlog: expiry is background
   * work, a backlog of 500,000 sessions still goes in under a minute. A batch that found less than it
   * asked for means nothing is left.
   */
  async sweep(maxBatches = Number.POSITIVE_INFINITY): Promise<number> {
    const max = this.#d.lifetimes.sweepBatchSize;
    const targetMs = SWEEP_BATCH_TARGET_MS[this.#d.store.kind];
    let size = Math.min(max, SWEEP_FIRST_BATCH);
    let total = 0;
    for (let batch = 0; batch < maxBatches; batch += 1) {
      const started = performance.now();
      const deleted = await this.#d.store.deleteExpired(this.#now(), size);
      const elapsed = performance.now() - started;
      total += deleted;
      if (deleted < size) break;
      // Scale towards the target, at most doubling per step (one fast batch proves little).
      size = Math.max(SWEEP_MIN_BATCH, Math.min(max, size * 2, Math.round(size * (targetMs / Math.max(elapsed, 0.1)))));
      await sleep(Math.min(Math.ceil(elapsed * SWEEP_PAUSE_FACTOR), SWEEP_MAX_PAUSE_MS));
    }
    return total;
  }

  decryptPayload(record: SessionRecord): SessionPayload {
    return JSON.parse(this.#d.cipher.decrypt(record.payload, record.idHash).plaintext.toString('utf8')) as SessionPayload;
  }

  #encrypt(payload: SessionPayload, idHash: string): string {
    return this.#d.cipher.encrypt(Buffer.from(JSON.stringify(payload)), idHash);
  }

  /**
   * A session cached but near the end of its TTL is reloaded in the background (one load at a time):
   * requests go on being answered from memory meanwhile, and the TTL still bounds how old the data they
   * see can be, since a reload that has not finished by then is waited for like any other load.
   */
  #refreshAhead(idHash: string, now: number): void {
    if (!this.#cache.refreshDue(idHash, now) || this.#loading.has(idHash)) return;
    this.#loadOnce(idHash, now).catch((err: unknown) => {
      // The entry expires as it would have; the next request then loads it (and reports a store failure).
      this.#d.log.debug({ reason: (err as Error).message }, 'background reload of a cached session failed');
    });
  }

  /** `#load`, single-flight: requests that find the same session missing from the cache share one load. */
  #loadOnce(idHash: string, now: number): Promise<Cached | undefined> {
    let pending = this.#loading.get(idHash);
    if (!pending) {
      pending = this.#load(idHash, now).finally(() => {
        this.#loading.delete(idHash);
        this.#staleLoads.delete(idHash);
      });
      this.#loading.set(idHash, pending);
    }
    return pending;
  }

  /**
   * From the store (not the cache: callers looked there first, or it is about to expire), decrypted, and
   * then cached, unless the session was evicted meanwhile: what was read may predate a logout, or a token
   * refresh (which evicts the session when it has written the new tokens). Loads of one session never
   * overlap (`#loadOnce`), so nothing newer than what this load read can have been cached meanwhile.
   */
  async #load(idHash: string, now: number): Promise<Cached | undefined> {
    const record = await this.#d.store.get(idHash);
    if (!record) {
      this.#cache.delete(idHash);
      return undefined;
    }
    let payload: SessionPayload;
    try {
      const decrypted = this.#d.cipher.decrypt(record.payload, idHash);
      payload = JSON.parse(decrypted.plaintext.toString('utf8')) as SessionPayload;
      if (decrypted.stale) this.#reencrypt(record, payload);
    } catch (err) {
      // A record we cannot decrypt (key removed, tampered row) is useless: treat as no session.
      this.#d.log.warn({ err: { name: (err as Error).name, message: (err as Error).message } }, 'session payload could not be decrypted; ignoring the session');
      this.#cache.delete(idHash);
      return undefined;
    }
    // Newer tokens than the store's, not written yet: those are the session's now.
    const unwritten = this.#unwritten.get(idHash);
    const entry = unwritten ? { record: { ...record, ...unwritten.update }, payload: unwritten.payload } : { record, payload };
    if (!this.#staleLoads.has(idHash)) this.#cache.set(idHash, entry, now);
    return entry;
  }

  /**
   * Records encrypted with SESSION_OLD_DB_KEY are re-encrypted with the current key on first read. The
   * write is guarded by the version read, so it never puts back tokens a refresh replaced; and a refresh's
   * write is guarded by its lease, not the version, so this write never makes a refresh fail. A refresh
   * writes with the current key anyway.
   */
  #reencrypt(record: SessionRecord, payload: SessionPayload): void {
    const update = { payload: this.#encrypt(payload, record.idHash), accessExpiresAt: record.accessExpiresAt };
    this.#d.store
      .updatePayload(record.idHash, record.version, update)
      .then((version) => {
        if (version !== null) {
          record.version = version;
          record.payload = update.payload;
        }
      })
      .catch((err: unknown) => this.#d.log.warn({ err: (err as Error).message }, 'could not re-encrypt a session with the current key'));
  }

  #maybeTouch(record: SessionRecord, now: number): void {
    const idleMs = this.#d.lifetimes.idleLifetimeSec * 1000;
    const idleExpiresAt = Math.min(record.expiresAt, now + idleMs);
    const threshold = Math.min(60_000, idleMs / 10);
    if (idleExpiresAt - record.idleExpiresAt < threshold) return;
    record.lastUsedAt = now;
    record.idleExpiresAt = idleExpiresAt;
    this.#d.store
      .touch(record.idHash, now, idleExpiresAt)
      .catch((err: unknown) => this.#d.log.warn({ err: (err as Error).message }, 'could not extend a session'));
  }

  /**
   * Due for refresh when the access token's remaining lifetime is below the smaller of the configured
   * skew and half its lifetime: a token living shorter than the skew is refreshed about once per half-life
   * instead of on every request. Sessions stored without the lifetime use the skew alone.
   */
  #needsRefresh(record: SessionRecord, payload: SessionPayload, now: number): boolean {
    if (record.accessExpiresAt === null) return false;
    const skewMs = this.#d.lifetimes.refreshSkewSec * 1000;
    const lifetime = payload.accessLifetimeMs;
    const marginMs = lifetime === undefined ? skewMs : Math.min(skewMs, lifetime / 2);
    return record.accessExpiresAt - marginMs <= now;
  }

  /** How long a request waits for another instance's refresh: its longest refresh, or a takeover. */
  get #waitBoundMs(): number {
    return longestRefreshMs(this.#d.oidcTimeoutMs ?? 10_000) + LEASE_MS + TAKEOVER_WATCH_MS + 1_000;
  }

  /**
   * One refresh across the fleet: the instance that takes the session's lease calls the IdP; the others
   * poll the store until the new tokens are there. A lease whose holder stopped renewing it is taken over
   * after a watch (src/session/lease.ts).
   */
  async #refresh(session: ActiveSession): Promise<string> {
    const { idHash } = session;
    const unwritten = this.#unwritten.get(idHash);
    if (unwritten) {
      // This instance holds newer tokens than the store: the refresh token they replaced is never presented again.
      if (!this.#needsRefresh(unwritten.record, unwritten.payload, this.#now())) return this.#adopt(session, unwritten.record, unwritten.payload).accessToken;
      // Due again before the store took them: refreshing needs the lease, which their write releases.
      await Promise.race([unwritten.written, sleep(LEASE_MS, undefined, { ref: false })]);
      if (this.#unwritten.has(idHash)) throw new StoreUnavailableError('refreshed tokens are waiting for the session store');
    }
    const deadline = performance.now() + this.#waitBoundMs;
    const watch = new LeaseWatch();
    for (;;) {
      const record = await this.#d.store.get(idHash);
      if (!record) throw new SessionEndedError('the session has ended');
      const payload = this.decryptPayload(record);
      // Another request or instance may have refreshed already: then use its tokens.
      if (!this.#needsRefresh(record, payload, this.#now())) return this.#adopt(session, record, payload).accessToken;
      const leaseId = randomUUID();
      const takeOver = watch.takeOver();
      const attempt = await this.#d.store.acquireRefreshLease(idHash, leaseId, LEASE_MS, takeOver);
      if (attempt.state === 'acquired') {
        if (takeOver) {
          this.#d.log.warn({ clientId: record.clientId }, 'took over the refresh lease of an instance that stopped renewing it (it died or lost the store); the refresh token it held is presented again');
        }
        return this.#refreshHoldingLease(session, leaseId);
      }
      if (attempt.state === 'gone') throw new SessionEndedError('the session has ended');
      watch.observe(attempt.holder, attempt.expired);
      if (performance.now() > deadline) throw new RefreshUnavailableError('timed out waiting for another instance to refresh');
      await sleep(LEASE_POLL_MS);
    }
  }

  async #refreshHoldingLease(session: ActiveSession, leaseId: string): Promise<string> {
    const { idHash } = session;
    // Renewed while the refresh runs (cleared when it settles), but no longer than the longest refresh can
    // take, every IdP call at its timeout: only a holder stuck beyond that lets its lease lapse, and the
    // others take over after their watch.
    const renewUntil = performance.now() + longestRefreshMs(this.#d.oidcTimeoutMs ?? 10_000);
    const renewal = setInterval(() => {
      if (performance.now() > renewUntil) return clearInterval(renewal);
      this.#d.store.renewRefreshLease(idHash, leaseId, LEASE_MS).then(
        (held) => {
          if (!held) clearInterval(renewal);
        },
        // The store is unreachable: the others cannot take the lease over either until it is back.
        () => undefined,
      );
    }, LEASE_RENEW_EVERY_MS);
    renewal.unref();
    let record: SessionRecord;
    let current: SessionPayload;
    let refreshed: Refreshed;
    try {
      // Re-read under the lease: the previous holder may have finished between our read and the lease.
      const fresh = await this.#d.store.get(idHash);
      if (!fresh) throw new SessionEndedError('the session has ended');
      record = fresh;
      current = this.#adopt(session, record);
      if (!this.#needsRefresh(record, current, this.#now())) {
        this.#release(idHash, leaseId);
        return current.accessToken;
      }
      if (!current.refreshToken) {
        await this.destroy(idHash);
        this.#d.onRefresh?.(record.clientId, 'invalid_grant');
        throw new SessionEndedError('the access token expired and there is no refresh token');
      }
      refreshed = await this.#callIdp(record, current, current.refreshToken, idHash, leaseId);
    } finally {
      clearInterval(renewal);
    }
    return this.#keep(session, record, current, refreshed, leaseId);
  }

  /** The refresh grant; an IdP refusal ends the session, an unreachable IdP keeps it (and frees the lease). */
  async #callIdp(record: SessionRecord, current: SessionPayload, refreshToken: string, idHash: string, leaseId: string): Promise<Refreshed> {
    const clientId = record.clientId;
    try {
      return await this.#d.refresher(clientId, refreshToken, {
        tenant: record.tenant,
        issuer: record.issuer,
        sub: record.sub,
        idToken: current.idToken,
        claims: current.claims,
      });
    } catch (err) {
      const kind = (err as { kind?: unknown }).kind;
      if (kind === 'invalid_grant' || kind === 'rejected') {
        this.#d.log.info({ clientId, reason: (err as Error).message }, 'refresh refused by the IdP; ending the session');
        await this.destroy(idHash);
        this.#d.onRefresh?.(clientId, 'invalid_grant');
        throw new SessionEndedError('the IdP refused to refresh the session');
      }
      this.#d.log.warn({ clientId, reason: (err as Error).message }, 'refresh failed; keeping the session');
      this.#d.onRefresh?.(clientId, 'unavailable');
      this.#release(idHash, leaseId);
      throw new RefreshUnavailableError('the IdP could not be reached to refresh the token');
    }
  }

  /**
   * Tokens the IdP issued are never dropped: they are served at once and written with the lease released
   * in the same step; when the store cannot take them, they stay in memory (served to this instance's
   * requests) and the write is retried until it can.
   */
  async #keep(session: ActiveSession, record: SessionRecord, current: SessionPayload, refreshed: Refreshed, leaseId: string): Promise<string> {
    const { tokens } = refreshed;
    const { idHash } = session;
    const receivedAt = this.#now();
    const payload: SessionPayload = {
      ...current,
      accessToken: tokens.accessToken,
      // IdPs that do not rotate refresh tokens return none: keep the one we have (and its expiry).
      refreshToken: tokens.refreshToken ?? current.refreshToken,
      idToken: tokens.idToken ?? current.idToken,
      claims: refreshed.claims,
    };
    const lifetime = lifetimeOf(tokens.accessExpiresAt, receivedAt);
    if (lifetime === undefined) delete payload.accessLifetimeMs;
    else payload.accessLifetimeMs = lifetime;
    if (tokens.scope) payload.scope = tokens.scope;
    if (tokens.refreshExpiresAt !== null) payload.refreshExpiresAt = tokens.refreshExpiresAt;
    else if (tokens.refreshToken !== undefined) delete payload.refreshExpiresAt;
    this.#d.onRefresh?.(record.clientId, 'success');
    const update: PayloadUpdate = { payload: this.#encrypt(payload, idHash), accessExpiresAt: tokens.accessExpiresAt };
    const view: SessionRecord = { ...record, ...update };
    this.#adopt(session, view, payload);
    let version: number | null;
    try {
      version = await this.#d.store.completeRefresh(idHash, leaseId, update);
    } catch (err) {
      this.#d.log.warn({ clientId: record.clientId, reason: (err as Error).message }, 'refreshed tokens could not be written; keeping them in memory and retrying');
      this.#holdUnwritten(idHash, { leaseId, record: view, payload, update });
      return payload.accessToken;
    }
    this.#written(idHash, record.clientId, version);
    // Not stored because the session was ended meanwhile (a logout): it is not served either.
    if (version === null && !(await this.#d.store.get(idHash))) throw new SessionEndedError('the session ended while it was being refreshed');
    return payload.accessToken;
  }

  /** After the refresh write: publish the new tokens, or say why they were not stored. */
  #written(idHash: string, clientId: string, version: number | null): void {
    if (version === null) {
      // The session ended meanwhile, or another instance took the lease over (this one was cut off from
      // the store for longer than the takeover watch): the store's state wins.
      this.#d.log.warn({ clientId }, 'refreshed tokens were not stored: the session ended or another instance took over its refresh');
    }
    void this.#invalidate([idHash]);
  }

  #holdUnwritten(idHash: string, pending: Omit<Unwritten, 'written'>): void {
    const entry: Unwritten = { ...pending, written: Promise.resolve() };
    this.#unwritten.set(idHash, entry);
    this.#cache.set(idHash, { record: entry.record, payload: entry.payload }, this.#now());
    entry.written = (async () => {
      let delay = WRITE_RETRY_MIN_MS;
      while (!this.#closed && this.#unwritten.get(idHash) === entry) {
        await sleep(delay, undefined, { ref: false });
        delay = Math.min(delay * 2, WRITE_RETRY_MAX_MS);
        // Shut down meanwhile (the store is being closed), or the session is over anyway.
        if (this.#closed || entry.record.expiresAt <= this.#now()) break;
        try {
          const version = await this.#d.store.completeRefresh(idHash, entry.leaseId, entry.update);
          this.#unwritten.delete(idHash);
          if (version !== null) this.#d.log.info({ clientId: entry.record.clientId }, 'refreshed tokens written once the store was back');
          this.#written(idHash, entry.record.clientId, version);
          return;
        } catch {
          // Still unreachable: try again.
        }
      }
      if (this.#unwritten.get(idHash) === entry) this.#unwritten.delete(idHash);
    })();
  }

  #release(idHash: string, leaseId: string): void {
    this.#d.store.releaseRefreshLease(idHash, leaseId).catch((err: unknown) => {
      // It lapses by itself within LEASE_MS; the others take over after their watch.
      this.#d.log.debug({ reason: (err as Error).message }, 'could not release a refresh lease');
    });
  }

  /**
   * Before the store is closed: refreshed tokens still waiting for the store get up to `waitMs` to be
   * written (their retries go on meanwhile), since the refresh tokens they replaced are used up at the IdP;
   * then the retries stop, and whatever is still unwritten is reported.
   */
  async close(waitMs = UNWRITTEN_DRAIN_MS): Promise<void> {
    if (this.#unwritten.size > 0) {
      this.#d.log.info({ sessions: this.#unwritten.size }, 'waiting for refreshed tokens to be written before shutdown');
      const pending = [...this.#unwritten.values()].map((entry) => entry.written);
      // A timer that holds the process open: the retries' own timers do not.
      const bound = new AbortController();
      await Promise.race([Promise.all(pending), sleep(waitMs, undefined, { signal: bound.signal }).catch(() => undefined)]);
      bound.abort();
    }
    this.#closed = true;
    if (this.#unwritten.size > 0) {
      this.#d.log.warn({ sessions: this.#unwritten.size }, 'refreshed tokens of some sessions were never written: the store was unreachable until shutdown');
    }
  }

  /** Makes `session` reflect `record` (decrypting unless the payload is given) and returns the payload. */
  #adopt(session: ActiveSession, record: SessionRecord, payload?: SessionPayload): SessionPayload {
    const decrypted = payload ?? this.decryptPayload(record);
    session.record = record;
    session.payload = decrypted;
    return decrypted;
  }

  /** Drops a session from the cache; a load of it in flight will not put back what it read. */
  #evict(idHash: string): void {
    this.#cache.delete(idHash);
    if (this.#loading.has(idHash)) this.#staleLoads.add(idHash);
  }

  async #invalidate(idHashes: string[]): Promise<void> {
    for (const h of idHashes) this.#evict(h);
    try {
      await this.#d.store.publishInvalidation(idHashes);
    } catch (err) {
      this.#d.log.warn({ err: (err as Error).message }, 'could not publish a session invalidation');
    }
  }
}
