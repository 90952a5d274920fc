/** Two token-handler processes on one Redis store (a key prefix of their own, via --redis_key_prefix). */
import { fleetSuite } from './scenarios.ts';
import { REDIS_URL, probeRedis, redisNamespace, requireInCi } from './support.ts';

const unavailable = await probeRedis();
requireInCi('Redis', unavailable);
const url = new URL(REDIS_URL);

fleetSuite({
  name: 'Redis',
  unavailable,
  namespace: redisNamespace,
  target: { host: url.hostname, port: Number(url.port || 6379) },
});
