/**
 * `node bench/tracing.ts`: what OpenTelemetry tracing costs a proxied request. Two token-handler subjects
 * (bench/subject.ts, SQLite) behind the same upstream: one without OTEL_* variables (tracing off, as by
 * default), one with OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP receiver this process runs (spans
 * counted and dropped). Rounds alternate between them; each round sends `requests` requests with a valid
 * traceparent over `connections` keep-alive connections, and the subject's CPU time (user + system) is read
 * before and after. Prints the median CPU µs per request of each and their ratio.
 *
 *   node bench/tracing.ts [--rounds 8] [--requests 3000] [--connections 10] [--warmup 3000]
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { login, startChild, TARGET_PATH, type Child } from './children.ts';
import { cliNumber } from './cli.ts';
import type { FixturesReady } from './fixtures.ts';
import type { SubjectReady, SubjectSpec } from './subject.ts';

const args = process.argv.slice(2);
const rounds = cliNumber(args, 'rounds') ?? 8;
const requests = cliNumber(args, 'requests') ?? 3000;
const connections = cliNumber(args, 'connections') ?? 10;
const warmup = cliNumber(args, 'warmup') ?? 3000;

let exports = 0;
let spans = 0;
const receiver = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    exports += 1;
    spans += (Buffer.concat(chunks).toString('utf8').match(/"spanId"/g) ?? []).length;
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
});
await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;

const fixtures = await startChild<FixturesReady>('fixtures.ts', []);
const spec: SubjectSpec = { mode: 'token-handler', upstream: fixtures.ready.upstream, issuer: fixtures.ready.issuer, store: 'sqlite', postgresUrl: '', redisUrl: '', logLevel: 'warn' };

/** A subject started with `env` added to this process's environment (fork inherits it). */
async function subject(env: Record<string, string>): Promise<Child<SubjectReady>> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    return await startChild<SubjectReady>('subject.ts', [JSON.stringify(spec)]);
  } finally {
    for (const key of Object.keys(env)) if (saved[key] === undefined) delete process.env[key];
  }
}

const cases = [
  { name: 'tracing off (no OTEL_* variables)', child: await subject({}) },
  { name: 'tracing on (OTLP/HTTP to a local receiver)', child: await subject({ OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl }) },
];

async function load(pool: Pool, cookie: string, n: number): Promise<void> {
  let sent = 0;
  const headers = { cookie: `session=${cookie}`, traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' };
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (sent < n) {
        sent += 1;
        const response = await pool.request({ path: `${TARGET_PATH}/static`, method: 'GET', headers });
        await response.body.dump();
        if (response.statusCode !== 200) throw new Error(`answered ${response.statusCode}`);
      }
    }),
  );
}

const runs = await Promise.all(
  cases.map(async (c) => {
    const base = `http://127.0.0.1:${c.child.ready.port}`;
    const cookie = await login(base);
    const pool = new Pool(base, { connections, pipelining: 1 });
    await load(pool, cookie, warmup);
    return { ...c, pool, cookie, perRequest: [] as number[] };
  }),
);
for (let r = 0; r < rounds; r++) {
  for (const run of r % 2 === 0 ? runs : [...runs].reverse()) {
    const before = await run.child.cpu();
    await load(run.pool, run.cookie, requests);
    run.perRequest.push((await run.child.cpu()) - before);
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const off = median(runs[0]!.perRequest) / requests;
const lines = [
  `| ${rounds} alternating rounds of ${requests} requests, ${connections} connections, a traceparent on each | CPU µs per request (median) | every round | vs off |`,
  '|---|---:|---|---:|',
  ...runs.map((run) => {
    const m = median(run.perRequest) / requests;
    return `| ${run.name} | ${m.toFixed(1)} | ${run.perRequest.map((x) => (x / requests).toFixed(0)).join(' / ')} | ${Math.round((m / off) * 100)}% |`;
  }),
];
process.stdout.write(`${lines.join('\n')}\n\nOTLP exports received: ${exports}, spans: ${spans}\n`);
for (const run of runs) {
  await run.pool.close();
  await run.child.stop();
}
await fixtures.stop();
receiver.close();
