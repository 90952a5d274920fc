/**
 * What an HTTP client leaves for the old generation: N requests at a fixed rate to the demo upstream's
 * `/static` (in a child process of its own), each client variant in a fresh process, with node:v8's
 * GCProfiler counting the bytes scavenges promote and their pauses. This is how undici 8's `request()` was
 * found to keep whole responses alive through young-generation collections (bench/RESULTS.md).
 *
 *   node bench/gc-client.ts [--requests 10000] [--rate 1000] [--undici <path to an undici package>]
 *
 * Variants: `request` (undici Pool.request, body dumped: what @fastify/reply-from does), `dispatch` (the same
 * Pool, a minimal handler), `node-http` (node:http with a keep-alive agent). `--undici` measures another
 * installation, e.g. `npm install --prefix /tmp/u8 undici@8` then `--undici /tmp/u8/node_modules/undici`.
 */
import { fork } from 'node:child_process';
import http from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GCProfiler } from 'node:v8';
import { cliFlag } from './cli.ts';
import type { FixturesReady } from './fixtures.ts';
import { summariseGcProfile } from './gcStats.ts';

type Variant = 'request' | 'dispatch' | 'node-http';
const VARIANTS: Variant[] = ['request', 'dispatch', 'node-http'];

interface Measured {
  variant: Variant;
  undici: string;
  requests: number;
  scavenges: number;
  scavengeMeanMs: number;
  scavengeMaxMs: number;
  /** MB the scavenges moved to the old generation, per 10,000 requests. */
  promotedMbPer10k: number;
}

const HERE = dirnameOf(import.meta.url);
function dirnameOf(url: string): string {
  return join(fileURLToPath(url), '..');
}

interface PoolLike {
  request(opts: { method: string; path: string }): Promise<{ body: { dump(): Promise<unknown> } }>;
  dispatch(opts: { method: string; path: string; origin: string }, handler: object): boolean;
  close(): Promise<void>;
}

/** One variant in this process: `count` requests, evenly spaced at `rate` per second. */
async function measure(variant: Variant, upstream: string, count: number, rate: number, undiciPath: string): Promise<Measured> {
  const require = createRequire(import.meta.url);
  const undici = require(undiciPath) as { Pool: new (origin: string, opts: object) => PoolLike };
  const pool = new undici.Pool(upstream, { connections: 50, pipelining: 1 });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 50 });
  const target = new URL('/static', upstream);
  const once = (): Promise<void> => {
    if (variant === 'request') return pool.request({ method: 'GET', path: target.pathname }).then(async (res) => void (await res.body.dump()));
    if (variant === 'dispatch') {
      return new Promise((resolve, reject) => {
        pool.dispatch(
          { method: 'GET', path: target.pathname, origin: target.origin },
          { onRequestStart() {}, onResponseStart() {}, onResponseData() {}, onResponseEnd: () => resolve(), onResponseError: (_c: unknown, err: Error) => reject(err) },
        );
      });
    }
    return new Promise((resolve, reject) => {
      http.get(target, { agent }, (res) => res.resume().once('end', resolve).once('error', reject)).once('error', reject);
    });
  };
  const run = (n: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const started = performance.now();
      let issued = 0;
      let done = 0;
      const tick = (): void => {
        const due = Math.min(n, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
        for (; issued < due; issued += 1) {
          once().then(() => {
            done += 1;
            if (done === n) resolve();
          }, reject);
        }
        if (issued < n) setTimeout(tick, 1);
      };
      tick();
    });
  await run(Math.min(2000, count)); // warm-up: connections open, code optimised
  const profiler = new GCProfiler();
  profiler.start();
  await run(count);
  const gc = summariseGcProfile(profiler.stop());
  await pool.close();
  agent.destroy();
  return {
    variant,
    undici: (require(join(undiciPath, 'package.json')) as { version: string }).version,
    requests: count,
    scavenges: gc.scavenges,
    scavengeMeanMs: gc.scavengeMeanMs,
    scavengeMaxMs: gc.scavengeMaxMs,
    promotedMbPer10k: Math.round((gc.promotedMb / count) * 10_000 * 100) / 100,
  };
}

const args = process.argv.slice(2);
const child = cliFlag(args, 'child') as Variant | undefined;
const count = Number(cliFlag(args, 'requests') ?? 10_000);
const rate = Number(cliFlag(args, 'rate') ?? 1000);
const undiciPath = cliFlag(args, 'undici') ?? join(HERE, '..', 'node_modules', 'undici');

if (child) {
  // A variant, in a process of its own so that no other variant's garbage is in its heap.
  const result = await measure(child, cliFlag(args, 'upstream')!, count, rate, undiciPath);
  process.send?.(result);
  process.disconnect();
} else {
  const fixtures = fork(join(HERE, 'fixtures.ts'), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const ready = await new Promise<FixturesReady>((resolve) => fixtures.once('message', (m) => resolve(m as FixturesReady)));
  const rows: Measured[] = [];
  for (const variant of VARIANTS) {
    const worker = fork(fileURLToPath(import.meta.url), ['--child', variant, '--upstream', ready.upstream, '--requests', String(count), '--rate', String(rate), '--undici', undiciPath], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    rows.push(await new Promise<Measured>((resolve, reject) => {
      worker.once('message', (m) => resolve(m as Measured));
      worker.once('exit', (code) => code !== 0 && reject(new Error(`${variant} exited with ${code}`)));
    }));
  }
  fixtures.disconnect();
  process.stdout.write(
    [
      `| client (${count} requests at ${rate}/s, 50 connections) | undici | scavenges | pause mean / max ms | MB promoted per 10k requests |`,
      '|---|---|---:|---:|---:|',
      ...rows.map((r) => `| ${r.variant} | ${r.variant === 'node-http' ? '–' : r.undici} | ${r.scavenges} | ${r.scavengeMeanMs} / ${r.scavengeMaxMs} | ${r.promotedMbPer10k} |`),
    ].join('\n') + '\n',
  );
}
