/**
 * The target table's lookup (src/proxy/table.ts): longest mount path first, a target at the root, the
 * percent-encoded spelling of a mount path (handed to that target, whose path check refuses it), and the
 * connection pools kept for targets a swap leaves as they were.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Dispatcher } from 'undici';
import { TargetTable } from '../../src/proxy/table.ts';
import { testTarget } from '../support/config.ts';

describe('TargetTable', () => {
  const tables: TargetTable<{ id: string; pool: Dispatcher }>[] = [];
  const table = () => {
    const t = new TargetTable((target, _url, pool) => ({ id: target.id, pool }));
    tables.push(t);
    return t;
  };
  afterEach(async () => {
    await Promise.all(tables.splice(0).map((t) => t.close()));
  });

  it('matches the longest mount path, the root last, and the router-decoded spelling of a mount path', () => {
    const t = table();
    t.set(
      [
        testTarget({ id: 'api', url: 'http://127.0.0.1:9/', mountPath: '/api' }),
        testTarget({ id: 'orders', url: 'http://127.0.0.1:9/', mountPath: '/api/orders' }),
        testTarget({ id: 'root', url: 'http://127.0.0.1:9/', mountPath: '/' }),
      ],
      undefined,
    );
    const id = (url: string) => t.match(url)?.route?.id;
    expect(id('/api/orders/1?x=1')).toBe('orders');
    expect(id('/api/orders')).toBe('orders');
    expect(id('/api/ordersx')).toBe('api');
    expect(id('/api')).toBe('api');
    expect(id('/apix')).toBe('root');
    expect(id('/')).toBe('root');
    expect(id('/%61pi/orders/1')).toBe('orders');
    expect(id('/api%2Forders/1')).toBe('root');
  });

  it('finds nothing outside every mount path, and a URN target without a directory is unresolved', () => {
    const t = table();
    t.set([testTarget({ id: 'svc', url: 'urn:ads:platform:svc', mountPath: '/svc' })], undefined);
    expect(t.match('/other')).toBeUndefined();
    expect(t.match('/%zz')).toBeUndefined();
    const svc = t.match('/svc/x');
    expect(svc?.route).toBeUndefined();
    expect(svc?.unresolved).toContain('no service directory');
  });

  it('keeps the pool of a target a swap leaves unchanged, and makes a new one for a new upstream', () => {
    const t = table();
    const first = testTarget({ id: 'a', url: 'http://127.0.0.1:9/v1', mountPath: '/a' });
    t.set([first], undefined);
    const pool = t.match('/a')?.route?.pool;
    t.set([first, testTarget({ id: 'b', url: 'http://127.0.0.1:9/v2', mountPath: '/b' })], undefined);
    expect(t.match('/a')?.route?.pool).toBe(pool);
    // Same origin and settings: the same pool, whatever the path.
    expect(t.match('/b')?.route?.pool).toBe(pool);
    t.set([{ ...first, url: 'http://127.0.0.2:9/v1' }], undefined);
    expect(t.match('/a')?.route?.pool).not.toBe(pool);
  });
});
