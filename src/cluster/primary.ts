/**
 * The primary process of --workers n (n > 1): forks n workers with node:cluster, which share the listener
 * (the primary accepts connections and hands them out round-robin); it serves no HTTP itself. It
 *
 * - relays invalidations between workers (src/cluster/worker.ts), and collects and aggregates their
 *   metrics for the one of them that is scraped, and counts their login requests against one rate limit;
 * - replaces a worker that dies, with a log line, after a backoff that grows while replacements keep
 *   dying young (a crash loop does not spin);
 * - on SIGTERM or SIGINT tells every worker to drain (each finishes its in-flight requests: src/main.ts,
 *   src/ops/drain.ts) and exits when all have: 0 when every worker exited cleanly;
 * - forwards SIGHUP (configuration reload) to every worker.
 *
 * A worker that fails before the group first came up is not replaced: the primary stops the others and
 * exits 1, as a single process failing to start would, for its supervisor to see.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { FixedWindowRateLimiter } from '../security/rateLimit.ts';
import { WORKER_INDEX_ENV, fromWorker, type FromPrimary, type MetricsJson } from './messages.ts';

export interface PrimaryOptions {
  workers: number;
  log: Logger;
  /** How long workers get to finish their in-flight requests after SIGTERM before they are killed. */
  shutdownGraceMs: number;
  /** Runs once every worker has stopped, before the primary exits (the benchmark removes its files). */
  beforeExit?: () => Promise<void>;
}

export interface PrimaryHandle {
  /** What SIGTERM does: every worker drains, then the primary exits. */
  shutdown(reason: string): void;
}

/** A replacement that lived at least this long was not crash-looping: the backoff starts over. */
const STABLE_UPTIME_MS = 30_000;
const FIRST_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 30_000;
/** How long a metrics collection waits for the workers; the ones that have not answered are left out. */
const COLLECT_TIMEOUT_MS = 3_000;
/** How long an invalidation relay waits for the other workers' `evicted`. */
const RELAY_TIMEOUT_MS = 4_000;

interface Slot {
  index: number;
  worker: Worker | undefined;
  startedAt: number;
  /** Consecutive deaths within STABLE_UPTIME_MS of starting. */
  failures: number;
  restart: NodeJS.Timeout | undefined;
}

/** The delay before a slot's replacement starts, after `failures` consecutive early deaths. */
export function backoffMs(failures: number): number {
  if (failures <= 1) return 0;
  return Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** (failures - 2));
}

export function runPrimary(options: PrimaryOptions): PrimaryHandle {
  const { log } = options;
  const slots: Slot[] = Array.from({ length: options.workers }, (_, index) => ({ index, worker: undefined, startedAt: 0, failures: 0, restart: undefined }));
  const slotOf = new Map<Worker, Slot>();
  let started = false;
  let readyCount = 0;
  let closing = false;
  let exitCode = 0;

  /** Requests in flight towards the workers: who still owes an answer, and what to do with the answers. */
  interface Round {
    waiting: Set<Worker>;
    answers: MetricsJson[];
    finish: () => void;
    timer: NodeJS.Timeout;
  }
  const rounds = new Map<number, Round>();
  let rateLimiter: FixedWindowRateLimiter | undefined;
  let rateSettings = '';
  let nextRound = 0;

  const send = (worker: Worker, message: FromPrimary): void => {
    if (!worker.isConnected()) return;
    try {
      worker.send(message);
    } catch (err) {
      log.warn({ worker: slotOf.get(worker)?.index, reason: (err as Error).message }, 'could not send to a worker');
    }
  };
  const connected = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());

  /** Sends a message to `targets` and calls `finish` once each has answered (or left), or after `timeoutMs`. */
  const round = (targets: Worker[], timeoutMs: number, message: (id: number) => FromPrimary, finish: (answers: MetricsJson[]) => void): void => {
    const id = (nextRound = (nextRound + 1) % Number.MAX_SAFE_INTEGER);
    const entry: Round = {
      waiting: new Set(targets),
      answers: [],
      finish: () => {
        clearTimeout(entry.timer);
        rounds.delete(id);
        finish(entry.answers);
      },
      timer: setTimeout(() => {
        log.warn({ workers: [...entry.waiting].map((w) => slotOf.get(w)?.index) }, 'workers did not answer the primary in time; going on without them');
        entry.finish();
      }, timeoutMs),
    };
    rounds.set(id, entry);
    if (entry.waiting.size === 0) return entry.finish();
    for (const worker of targets) send(worker, message(id));
  };
  const answered = (worker: Worker, id: number, metrics?: MetricsJson): void => {
    const entry = rounds.get(id);
    if (entry === undefined || !entry.waiting.delete(worker)) return;
    if (metrics !== undefined) entry.answers.push(metrics);
    if (entry.waiting.size === 0) entry.finish();
  };

  const fork = (slot: Slot): void => {
    slot.restart = undefined;
    const worker = cluster.fork({ [WORKER_INDEX_ENV]: String(slot.index) });
    slot.worker = worker;
    slot.startedAt = Date.now();
    slotOf.set(worker, slot);
    worker.on('message', (raw: unknown) => {
      const message = fromWorker(raw);
      if (message === undefined) return;
      switch (message.th) {
        case 'ready':
          if (started) {
            const slot = slotOf.get(worker);
            log.info({ worker: slot?.index, pid: worker.process.pid }, `worker ${slot?.index} (pid ${worker.process.pid}) listening`);
          } else if (++readyCount === slots.length) {
            started = true;
            log.info({ workers: slots.length, pids: slots.map((s) => s.worker?.process.pid) }, `all ${slots.length} workers listening`);
          }
          return;
        case 'invalidate': {
          const others = connected().filter((w) => w !== worker);
          round(others, RELAY_TIMEOUT_MS, (id) => ({ th: 'invalidate', id, hashes: message.hashes }), () => send(worker, { th: 'relayed', id: message.id }));
          return;
        }
        case 'rate':
          // The workers' configuration sets the limiter up (again after a reload that changed the limit).
          if (rateLimiter === undefined || rateSettings !== `${message.limit}/${message.windowMs}`) {
            rateLimiter = new FixedWindowRateLimiter({ limit: message.limit, windowMs: message.windowMs });
            rateSettings = `${message.limit}/${message.windowMs}`;
          }
          return send(worker, { th: 'rate', id: message.id, decision: rateLimiter.take(message.key) });
        case 'evicted':
          return answered(worker, message.id);
        case 'collected':
          return answered(worker, message.id, message.metrics);
        case 'metrics':
          round(connected(), COLLECT_TIMEOUT_MS, (id) => ({ th: 'collect', id }), (answers) => {
            try {
              const registry = AggregatorRegistry.aggregate(answers);
              registry
                .metrics()
                .then((body) => send(worker, { th: 'metrics', id: message.id, body, contentType: registry.contentType }))
                .catch((err: unknown) => send(worker, { th: 'metrics', id: message.id, error: (err as Error).message }));
            } catch (err) {
              send(worker, { th: 'metrics', id: message.id, error: (err as Error).message });
            }
          });
          return;
      }
    });
  };

  cluster.on('exit', (worker, code, signal) => {
    const slot = slotOf.get(worker);
    slotOf.delete(worker);
    // A worker gone owes no answers.
    for (const [id] of rounds) answered(worker, id);
    if (slot === undefined) return;
    if (slot.worker === worker) slot.worker = undefined;
    if (closing) {
      // Our SIGTERM ends a worker still starting (no handler yet, nothing in flight): a clean stop too.
      if (code !== 0 && signal !== 'SIGTERM') exitCode = 1;
      if (slots.every((s) => s.worker === undefined)) finish();
      return;
    }
    const how = signal ? `signal ${signal}` : `code ${code}`;
    if (!started) {
      log.fatal({ worker: slot.index, pid: worker.process.pid, code, signal }, `worker ${slot.index} exited (${how}) before all workers were listening; stopping`);
      return shutdown('startup failure');
    }
    const uptime = Date.now() - slot.startedAt;
    slot.failures = uptime < STABLE_UPTIME_MS ? slot.failures + 1 : 1;
    const delay = backoffMs(slot.failures);
    log.error({ worker: slot.index, pid: worker.process.pid, code, signal, uptimeMs: uptime, restartInMs: delay }, `worker ${slot.index} (pid ${worker.process.pid}) exited (${how}); starting a replacement in ${delay} ms`);
    slot.restart = setTimeout(() => fork(slot), delay);
  });

  let forceTimer: NodeJS.Timeout | undefined;
  const finish = (): void => {
    if (forceTimer) clearTimeout(forceTimer);
    log.info({ code: exitCode }, 'all workers stopped; exiting');
    const before = options.beforeExit?.() ?? Promise.resolve();
    before.catch((err: unknown) => log.error({ reason: (err as Error).message }, 'error before exiting')).finally(() => process.exit(exitCode));
  };
  const shutdown = (reason: string): void => {
    if (closing) return;
    closing = true;
    if (reason === 'startup failure') exitCode = 1;
    for (const slot of slots) {
      if (slot.restart) clearTimeout(slot.restart);
      slot.restart = undefined;
    }
    const alive = slots.filter((s) => s.worker !== undefined);
    log.info({ reason, workers: alive.length }, 'shutting down: every worker finishes its in-flight requests');
    if (alive.length === 0) return finish();
    for (const slot of alive) slot.worker?.process.kill('SIGTERM');
    forceTimer = setTimeout(() => {
      log.error('workers did not finish in time; killing them');
      for (const slot of slots) slot.worker?.process.kill('SIGKILL');
      exitCode = 1;
      setTimeout(() => process.exit(1), 1000).unref();
    }, options.shutdownGraceMs + 5_000);
    forceTimer.unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => {
    log.info('SIGHUP: forwarding to every worker');
    for (const slot of slots) slot.worker?.process.kill('SIGHUP');
  });

  log.info({ workers: options.workers }, `starting ${options.workers} workers`);
  for (const slot of slots) fork(slot);
  return { shutdown };
}
