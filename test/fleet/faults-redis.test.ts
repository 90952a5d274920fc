/** Refresh under faults on a Redis store (a key prefix of its own, reached through a TCP proxy the test cuts). */
import { faultSuite } from './faults.ts';
import { REDIS_URL, probeRedis, redisNamespace, requireInCi } from './support.ts';

const unavailable = await probeRedis();
requireInCi('Redis', unavailable);
const url = new URL(REDIS_URL);

faultSuite({
  name: 'Redis',
  unavailable,
  namespace: redisNamespace,
  target: { host: url.hostname, port: Number(url.port || 6379) },
});
