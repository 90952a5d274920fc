import { hash, randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { TokenSet } from '../oidc/flows.ts';
import type { SessionRecord, SessionStore } from '../store/types.ts';
import { TtlCache } from './cache.ts';
import type { CookieSealer, UnsealedCookie } from './cookieSealer.ts';
import { RefreshUnavailableError, SessionEndedError } from './errors.ts';
import type { ActiveSession, SessionClaims, SessionPayload } from './model.ts';
import type { PayloadCipher } from './payloadCipher.ts';

export interface SessionLifetimes {
  absoluteLifetimeSec: number;
  idleLifetimeSec: number;
  refreshSkewSec: number;
  sweepBatchSize: number;
}

/**
 * Refreshes tokens at the client's IdP; throws OidcError (kind `invalid_grant` ends the session). The
 * session's tenant selects the IdP of a client that serves several tenants.
 */
export type Refresher = (clientId: string, refreshToken: string, session: { tenant: string | null; issuer: string }) => Promise<TokenSet>;

export interface NewSession {
  clientId: string;
  tenant: string | null;
  issuer: string;
  sub: string;
  sid: string | null;
  tokens: TokenSet;
  claims: SessionClaims;
  userAgent: string | null;
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
const REFRESH_WAIT_STEP_MS = 50;

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
  readonly #owner = randomUUID();
  readonly #now: () => number;

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

  /** Stores a new session under a fresh random id (never one the browser offered: no fixation). */
  async create(input: NewSession): Promise<{ cookieValue: string; session: ActiveSession }> {
    const now = this.#now();
    const id = randomBytes(SESSION_ID_BYTES);
    const idHash = SessionService.hashId(id);
    const payload: SessionPayload = { accessToken: input.tokens.accessToken, claims: input.claims };
    if (input.tokens.refreshToken) payload.refreshToken = input.tokens.refreshToken;
    if (input.tokens.idToken) payload.idToken = input.tokens.idToken;
    if (input.tokens.scope) payload.scope = input.tokens.scope;
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
    const session: ActiveSession = { id, idHash, record, payload, resealCookie: false };
    return { cookieValue: this.sealCookie(session), session };
  }

  /**
   * The live session behind a cookie value for `clientId` (and `tenant`), or undefined for a missing,
   * forged, foreign, expired or deleted one. Extends the idle lifetime (rolling) at most every
   * tenth of it, so steady traffic does not write on every request.
   */
  async resolve(cookieValue: string | undefined, expect: { clientId: string; tenant: string | null }): Promise<ActiveSession | undefined> {
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
  resolveInMemory(cookieValue: string, expect: { clientId: string; tenant: string | null }): ActiveSession | undefined | typeof NOT_IN_MEMORY {
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
  #activate(entry: Cached, unsealed: UnsealedCookie, idHash: string, expect: { clientId: string; tenant: string | null }, now: number): ActiveSession | undefined {
    const { record } = entry;
    if (record.clientId !== expect.clientId || record.tenant !== expect.tenant) return undefined;
    if (record.expiresAt <= now || record.idleExpiresAt <= now) {
      this.#evict(idHash);
      return undefined;
    }
    this.#maybeTouch(record, now);
    return { id: unsealed.data, idHash, record, payload: entry.payload, resealCookie: unsealed.stale };
  }

  /** The session's access token when it needs no refresh yet (else undefined: call `accessToken`). */
  currentAccessToken(session: ActiveSession): string | undefined {
    return this.#needsRefresh(session.record, this.#now()) ? undefined : session.payload.accessToken;
  }

  /** A usable access token, refreshed first when it expires within the configured skew. */
  async accessToken(session: ActiveSession): Promise<string> {
    if (!this.#needsRefresh(session.record, this.#now())) return session.payload.accessToken;
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
    const entry = { record, payload };
    if (!this.#staleLoads.has(idHash)) this.#cache.set(idHash, entry, now);
    return entry;
  }

  /** Records encrypted with SESSION_OLD_DB_KEY are re-encrypted with the current key on first read. */
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

  #needsRefresh(record: SessionRecord, now: number): boolean {
    return record.accessExpiresAt !== null && record.accessExpiresAt - this.#d.lifetimes.refreshSkewSec * 1000 <= now;
  }

  async #refresh(session: ActiveSession): Promise<string> {
    const { idHash } = session;
    const leaseMs = 30_000;
    const deadline = this.#now() + leaseMs;
    for (;;) {
      const record = await this.#d.store.get(idHash);
      if (!record) throw new SessionEndedError('the session has ended');
      const now = this.#now();
      // Another request or instance may have refreshed already: then use its tokens.
      if (!this.#needsRefresh(record, now)) return this.#adopt(session, record).accessToken;
      if (await this.#d.store.acquireRefreshLease(idHash, this.#owner, leaseMs, now)) {
        try {
          return await this.#refreshHoldingLease(session, idHash);
        } finally {
          await this.#d.store.releaseRefreshLease(idHash, this.#owner).catch(() => undefined);
        }
      }
      if (this.#now() > deadline) throw new RefreshUnavailableError('timed out waiting for another instance to refresh');
      await sleep(REFRESH_WAIT_STEP_MS);
    }
  }

  async #refreshHoldingLease(session: ActiveSession, idHash: string): Promise<string> {
    // Re-read under the lease: the previous holder may have finished between our read and the lease.
    const record = await this.#d.store.get(idHash);
    if (!record) throw new SessionEndedError('the session has ended');
    const current = this.#adopt(session, record);
    if (!this.#needsRefresh(record, this.#now())) return current.accessToken;
    const clientId = record.clientId;
    if (!current.refreshToken) {
      await this.destroy(idHash);
      this.#d.onRefresh?.(clientId, 'invalid_grant');
      throw new SessionEndedError('the access token expired and there is no refresh token');
    }
    let tokens: TokenSet;
    try {
      tokens = await this.#d.refresher(clientId, current.refreshToken, { tenant: record.tenant, issuer: record.issuer });
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
      throw new RefreshUnavailableError('the IdP could not be reached to refresh the token');
    }
    const payload: SessionPayload = {
      ...current,
      accessToken: tokens.accessToken,
      // IdPs that do not rotate refresh tokens return none: keep the one we have.
      refreshToken: tokens.refreshToken ?? current.refreshToken,
      idToken: tokens.idToken ?? current.idToken,
    };
    if (tokens.scope) payload.scope = tokens.scope;
    const update = { payload: this.#encrypt(payload, idHash), accessExpiresAt: tokens.accessExpiresAt };
    const version = await this.#d.store.updatePayload(idHash, record.version, update);
    if (version === null) throw new SessionEndedError('the session ended while it was being refreshed');
    this.#d.onRefresh?.(clientId, 'success');
    const updated: SessionRecord = { ...record, ...update, version };
    this.#adopt(session, updated, payload);
    await this.#invalidate([idHash]);
    return payload.accessToken;
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
