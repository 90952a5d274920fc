/**
 * `node bench/micro.ts`: the per-request pieces issue #9 changed, each timed alone against what it
 * replaced, in one process (so the ratios hold on a noisy machine even when the absolute numbers move).
 *
 *   request line    Fastify's request-completed line through pino (log.ts options) vs written directly
 *                   (src/ops/requestLog.ts), into a sink that drops it
 *   stdout          one synchronous write per line (pino's default) vs one per turn of the event loop
 *                   (src/ops/logDestination.ts), to /dev/null, 20 lines a turn
 *   metrics         a prom-client counter + histogram child per request vs src/ops/hotMetrics.ts
 *   path join       joinUpstreamPath of a plain path (no URL re-parse) vs one with a character that
 *                   takes the re-parse
 *   upstream headers  reply-from's copy + delete-in-place rewrite (session 1) vs one pass into a new object
 *   trace context   that pass without vs with a browser's traceparent + tracestate (validated; tracing off)
 *
 * Prints a Markdown table; `--json <file>` also writes the numbers.
 */
import { openSync, writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { destination, pino } from 'pino';
import { Counter, Histogram, Registry } from 'prom-client';
import { createLogger, loggerOptions } from '../src/log.ts';
import { TurnBatchedStdout } from '../src/ops/logDestination.ts';
import { HotCounter, HotHistogram } from '../src/ops/hotMetrics.ts';
import { OneLinePerRequest } from '../src/ops/requestLog.ts';
import { prepareUpstreamHeaders, type Headers } from '../src/proxy/headers.ts';
import { joinUpstreamPath } from '../src/proxy/paths.ts';

type Row = { piece: string; before: string; after: string; beforeUs: number; afterUs: number };

/** Median µs per call over 7 runs of `n` calls (after one warm-up run). */
function time(n: number, fn: (i: number) => void): number {
  const runs: number[] = [];
  for (let r = 0; r < 8; r++) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn(i);
    if (r > 0) runs.push(Number(process.hrtime.bigint() - started) / 1000 / n);
  }
  runs.sort((a, b) => a - b);
  return runs[Math.floor(runs.length / 2)]!;
}

/** As `time`, for work that completes over turns of the event loop: CPU µs per call. */
async function timeTurns(total: number, perTurn: number, fn: (i: number) => void, drain: () => void): Promise<number> {
  const runs: number[] = [];
  for (let r = 0; r < 6; r++) {
    const cpu = process.cpuUsage();
    let i = 0;
    await new Promise<void>((resolve) => {
      const turn = (): void => {
        for (let k = 0; k < perTurn && i < total; k++, i++) fn(i);
        if (i < total) setImmediate(turn);
        else setImmediate(resolve);
      };
      turn();
    });
    drain();
    const used = process.cpuUsage(cpu);
    if (r > 0) runs.push((used.user + used.system) / total);
  }
  runs.sort((a, b) => a - b);
  return runs[Math.floor(runs.length / 2)]!;
}

const rows: Row[] = [];
const add = (piece: string, before: string, beforeUs: number, after: string, afterUs: number): void => {
  rows.push({ piece, before, after, beforeUs: Math.round(beforeUs * 100) / 100, afterUs: Math.round(afterUs * 100) / 100 });
};

// --- request line ------------------------------------------------------------------------------------
{
  const sink = (): Writable => new Writable({ write: (_chunk, _encoding, callback) => callback() });
  const config = { logLevel: 'info', isProduction: true } as const;
  const viaPino = pino(loggerOptions(config, false), sink());
  const direct = createLogger(config, false, sink());
  const controller = new OneLinePerRequest();
  const request = { method: 'GET', url: '/token-handler/v1/targets/api/static?page=2', host: '127.0.0.1:8080', ip: '127.0.0.1', id: 'req-1' };
  const line = (log: typeof viaPino) => {
    const reply = { statusCode: 200, elapsedTime: 1.2345, log: log.child({ reqId: 'req-1' }) };
    // The controller reads only these fields of Fastify's request and reply.
    return () => controller.requestCompleted(null, request as never, reply as never);
  };
  add('request line (incl. the per-request child logger)', 'pino with log.ts options', time(50_000, line(viaPino)), 'written directly', time(50_000, line(direct)));
}

// --- stdout ------------------------------------------------------------------------------------------
{
  const fd = openSync('/dev/null', 'w');
  const text = `${JSON.stringify({ level: 30, time: Date.now(), pid: 1, hostname: 'h', reqId: 'req-1', req: { method: 'GET', url: '/token-handler/v1/targets/api/static', host: '127.0.0.1:8080', remoteAddress: '127.0.0.1' }, res: { statusCode: 200 }, responseTime: 1.2, msg: 'request completed' })}\n`;
  const perLine = destination({ dest: fd, sync: true });
  const batched = new TurnBatchedStdout(fd);
  const before = await timeTurns(100_000, 20, () => perLine.write(text), () => undefined);
  const after = await timeTurns(100_000, 20, () => batched.write(text), () => batched.flush());
  add('stdout, 20 lines per turn (CPU)', 'a write per line', before, 'a write per turn', after);
}

// --- metrics -----------------------------------------------------------------------------------------
{
  const buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  const promRegistry = new Registry();
  const promCount = new Counter({ name: 'a_total', help: 'h', labelNames: ['route', 'method', 'status'], registers: [promRegistry] }).labels('/x/*', 'GET', '200');
  const promDuration = new Histogram({ name: 'a_seconds', help: 'h', labelNames: ['route', 'method'], buckets, registers: [promRegistry] }).labels('/x/*', 'GET');
  const hotRegistry = new Registry();
  const hotCount = new HotCounter('b_total', 'h', ['route', 'method', 'status'], [hotRegistry]).labels('/x/*', 'GET', '200');
  const hotDuration = new HotHistogram('b_seconds', 'h', ['route', 'method'], buckets, [hotRegistry]).labels('/x/*', 'GET');
  add(
    'a counter + a histogram observation',
    'prom-client children',
    time(200_000, (i) => {
      promCount.inc();
      promDuration.observe((i % 100) / 1000);
    }),
    'hot metrics',
    time(200_000, (i) => {
      hotCount.inc();
      hotDuration.observe((i % 100) / 1000);
    }),
  );
}

// --- path join ---------------------------------------------------------------------------------------
{
  const base = { origin: 'http://api.internal:8080', basePath: '/v1' };
  add(
    'path join and check',
    'with the URL re-parse (a `^` in the path)',
    time(200_000, () => joinUpstreamPath(base, '/orders/2024/items^1')),
    'plain path, no re-parse',
    time(200_000, () => joinUpstreamPath(base, '/orders/2024/items-1')),
  );
}

// --- upstream headers --------------------------------------------------------------------------------
{
  const browser: Headers = {
    host: '127.0.0.1:8080',
    'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0 Safari/537.36',
    accept: 'application/json, text/plain, */*',
    'accept-language': 'en-GB,en;q=0.9',
    'accept-encoding': 'gzip, deflate, br',
    cookie: 'session=c2VhbGVkLXNlc3Npb24tY29va2llLXZhbHVlLWxvbmctZW5vdWdo.bWFj; XSRF-TOKEN=abc; theme=dark',
    'x-xsrf-token': 'abc',
    connection: 'keep-alive',
    'sec-fetch-site': 'same-origin',
  };
  const policy = { isOwnCookie: (name: string) => name === 'session' || name === 'XSRF-TOKEN', xsrfHeader: 'x-xsrf-token', extra: [] as const, upstreamHost: 'api.internal:8080', allowMethodOverride: false };
  const forwarded = { clientAddress: '127.0.0.1', peerTrusted: false, proto: 'http', host: '127.0.0.1:8080' };
  const token = 'eyJhbGciOiJSUzI1NiJ9.'.padEnd(800, 'x');
  // Session 1: reply-from's copy, then removal in place (every hop-by-hop name probed, keys deleted).
  const hop = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'];
  const inPlace = (): void => {
    const headers: Headers = { ...browser };
    for (const name of hop) if (headers[name] !== undefined) delete headers[name];
    for (const name of ['proxy-authorization', 'authorization', 'x-xsrf-token', 'expect']) if (headers[name] !== undefined) delete headers[name];
    headers.cookie = 'theme=dark';
    headers['x-forwarded-for'] = forwarded.clientAddress;
    headers['x-forwarded-proto'] = forwarded.proto;
    headers['x-forwarded-host'] = forwarded.host;
    headers.host = policy.upstreamHost;
    headers.authorization = `Bearer ${token}`;
  };
  add(
    'upstream request headers',
    'copy, then delete in place',
    time(200_000, inPlace),
    'one pass into a new object',
    time(200_000, () => prepareUpstreamHeaders({ ...browser }, policy, token, forwarded, true)),
  );
  // Tracing off: what a browser's W3C trace context costs the same pass (traceparent validated, tracestate kept).
  const withTrace: Headers = { ...browser, traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: 'rojo=00f067aa0ba902b7' };
  add(
    'upstream headers, trace context',
    'no traceparent',
    time(200_000, () => prepareUpstreamHeaders({ ...browser }, policy, token, forwarded, true)),
    'traceparent + tracestate',
    time(200_000, () => prepareUpstreamHeaders({ ...withTrace }, policy, token, forwarded, true)),
  );
}

const table = [
  '| per request | before | µs | after | µs | after / before |',
  '|---|---|---:|---|---:|---:|',
  ...rows.map((r) => `| ${r.piece} | ${r.before} | ${r.beforeUs} | ${r.after} | ${r.afterUs} | ${Math.round((r.afterUs / r.beforeUs) * 100)}% |`),
].join('\n');
process.stdout.write(`Node ${process.versions.node}; medians of 7 runs.\n\n${table}\n`);
const json = process.argv.indexOf('--json');
if (json > 0 && process.argv[json + 1]) writeFileSync(process.argv[json + 1]!, `${JSON.stringify(rows, null, 2)}\n`);
