/**
 * Benchmark child process: the embedded dev IdP and the demo upstream, in a process of their own so the
 * proxies under test never share an event loop with them. Started by bench/run.ts with an IPC channel;
 * reports `{ issuer, upstream }`, answers `'rss'` and `'cpu'` (µs, user + system) as bench/subject.ts does, and runs until
 * the parent disconnects.
 */
import { startDevIdp } from '../src/demo/idp.ts';
import { startDemoUpstream } from '../src/demo/upstream.ts';

export interface FixturesReady {
  type: 'ready';
  issuer: string;
  upstream: string;
  pid: number;
}

const idp = await startDevIdp({ accessTokenTtlSec: 24 * 3600 });
// No JWKS: /echo reports the bearer token present but does not verify it, so the upstream's cost per
// request is the same for every case (a JWT verification would dwarf what is being measured).
const upstream = await startDemoUpstream();
const ready: FixturesReady = { type: 'ready', issuer: idp.issuer, upstream: upstream.url, pid: process.pid };
process.send?.(ready);
process.on('message', (message: unknown) => {
  if (message === 'rss') process.send?.({ type: 'rss', rss: process.memoryUsage().rss });
  if (message === 'cpu') {
    const { user, system } = process.cpuUsage();
    process.send?.({ type: 'cpu', micros: user + system });
  }
});
process.once('disconnect', () => {
  void Promise.all([upstream.close(), idp.close()]).finally(() => process.exit(0));
});
