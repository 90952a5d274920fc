/** --workers 2 on Redis (a key prefix of its own). */
import { probeRedis, redisNamespace, requireInCi } from '../fleet/support.ts';
import { workersSuite } from './workers.ts';

const unavailable = await probeRedis();
requireInCi('Redis', unavailable);

workersSuite({ name: 'Redis', unavailable, namespace: redisNamespace });
