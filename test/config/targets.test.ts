import { describe, expect, it } from 'vitest';
import { idFromEndpoint } from '../../src/config/goProxyFile.ts';
import { DEFAULT_METHODS, DEFAULT_POOL } from '../../src/config/targets.ts';
import { OIDC, load, problemsOf, tempDir, writeFiles } from './helpers.ts';

const withFile = (name: string, text: string) => writeFiles(tempDir(), { [name]: text });

describe('go-token-handler proxy file', () => {
  it('is accepted as-is', () => {
    const dir = withFile(
      'proxy.yaml',
      `proxies:
  - endpoint: /proxy
    target: http://127.0.0.1:9081
    parameters:
      idle-conn-timeout: 120s
      max-idle-conns: 100
      keep-alive: 30s
      timeout: 90s
  - endpoint: /api/orders
    target: https://orders.internal.example.com/v1
`,
    );
    const { config } = load([...OIDC, '--proxy_config', 'proxy.yaml'], { cwd: dir });
    expect(config.targets).toEqual([
      {
        id: 'proxy',
        url: 'http://127.0.0.1:9081',
        mountPath: '/proxy',
        clientId: 'default',
        methods: DEFAULT_METHODS,
        tokenRequirement: 'user',
        timeoutMs: 90_000,
        headers: {},
        // As go-token-handler did: upstream cookies reach the browser, origin-verification CSRF, Go's error shape.
        passSetCookie: true,
        allowMethodOverride: false,
        pool: { connections: 100, keepAliveTimeoutMs: 120_000, keepAliveMaxTimeoutMs: 30_000 },
        websocket: false,
        csrf: { mode: 'origin', allMethods: false, allowCrossSiteGet: false },
        goErrors: true,
        redirectBareMount: false,
      },
      expect.objectContaining({ id: 'api-orders', mountPath: '/api/orders', url: 'https://orders.internal.example.com/v1', timeoutMs: 30_000, pool: DEFAULT_POOL }),
    ]);
  });

  it("accepts an endpoint with a trailing slash (Go ServeMux's subtree pattern) and our parameters keys", () => {
    const dir = withFile(
      'p.yaml',
      'proxies:\n  - endpoint: /api/\n    target: http://127.0.0.1:9081/v1\n    parameters:\n      pass-set-cookie: false\n      csrf: token\n      allow-cross-site-get: true\n  - endpoint: /proxy\n    target: http://127.0.0.1:9082\n',
    );
    const { config } = load([...OIDC, '--proxy_config', 'p.yaml'], { cwd: dir });
    expect(config.targets[0]).toMatchObject({
      id: 'api',
      mountPath: '/api',
      redirectBareMount: true,
      passSetCookie: false,
      csrf: { mode: 'token', allMethods: false, allowCrossSiteGet: true },
      goErrors: true,
    });
    expect(config.targets[1]).toMatchObject({ id: 'proxy', mountPath: '/proxy', redirectBareMount: false, passSetCookie: true, csrf: { mode: 'origin' } });
  });

  it('applies --csrf_mode to every target that names no mode, Go entries too; our targets default to token', () => {
    const dir = withFile(
      'p.yaml',
      'proxies:\n  - endpoint: /proxy\n    target: http://127.0.0.1:9081\ntargets:\n  - id: ours\n    url: http://127.0.0.1:9082\n  - id: strict\n    url: http://127.0.0.1:9083\n    csrf: origin\n    csrfAllMethods: true\n',
    );
    const modes = (argv: string[]) => load([...OIDC, '--proxy_config', 'p.yaml', ...argv], { cwd: dir }).config.targets.map((t) => [t.id, t.csrf.mode, t.csrf.allMethods]);
    expect(modes([])).toEqual([['ours', 'token', false], ['strict', 'origin', true], ['proxy', 'origin', false]]);
    expect(modes(['--csrf_mode', 'token'])).toEqual([['ours', 'token', false], ['strict', 'origin', true], ['proxy', 'token', false]]);
    expect(modes(['--csrf-mode=origin'])).toEqual([['ours', 'origin', false], ['strict', 'origin', true], ['proxy', 'origin', false]]);
  });

  it('accepts the camelCase parameters of older releases', () => {
    const dir = withFile('p.yaml', 'proxies:\n  - endpoint: /proxy\n    target: http://127.0.0.1:9081\n    parameters:\n      idleConnTimeout: 120s\n      maxIdleConns: 10\n      dialKeepAlive: 30s\n      dialTimeout: 5s\n');
    expect(load([...OIDC, '--proxy_config', 'p.yaml'], { cwd: dir }).config.targets[0]).toMatchObject({
      timeoutMs: 5000,
      pool: { connections: 10, keepAliveTimeoutMs: 120_000, keepAliveMaxTimeoutMs: 30_000 },
    });
  });

  it('names unknown keys and the allowed ones', () => {
    const dir = withFile('p.yaml', 'proxies:\n  - endpoint: /proxy\n    target: http://127.0.0.1:9081\n    parameters:\n      max-conns: 5\n    retries: 2\nextra: 1\n');
    expect(problemsOf([...OIDC, '--proxy_config', 'p.yaml'], { cwd: dir })).toEqual([
      'proxy file: unknown key "extra"; allowed: proxies, targets',
    ]);
    const nested = withFile('p.yaml', 'proxies:\n  - endpoint: /proxy\n    target: http://127.0.0.1:9081\n    parameters:\n      max-conns: 5\n    retries: 2\n');
    expect(problemsOf([...OIDC, '--proxy_config', 'p.yaml'], { cwd: nested })).toEqual([
      'proxy file proxies[0].parameters: unknown key "max-conns"; allowed: idle-conn-timeout, max-idle-conns, keep-alive, timeout, idleConnTimeout, maxIdleConns, dialKeepAlive, dialTimeout, pass-set-cookie, csrf, allow-cross-site-get',
      'proxy file proxies[0]: unknown key "retries"; allowed: endpoint, target, parameters',
    ]);
  });

  it('reports bad values with the Go key names', () => {
    const dir = withFile('p.yaml', 'proxies:\n  - endpoint: api\n    target: ftp://x\n    parameters:\n      timeout: soon\n      max-idle-conns: -1\n');
    expect(problemsOf([...OIDC, '--proxy_config', 'p.yaml'], { cwd: dir })).toEqual(['proxy file proxies[0].parameters.max-idle-conns: must be more than 0']);
    const values = withFile('p.yaml', 'proxies:\n  - endpoint: api\n    target: ftp://x\n    parameters:\n      timeout: soon\n');
    expect(problemsOf([...OIDC, '--proxy_config', 'p.yaml'], { cwd: values })).toEqual([
      'proxy file proxies[0].target "ftp://x": must be an http(s) URL',
      'proxy file proxies[0].endpoint "api": must be a path like /api/orders: starting with /, without trailing slash, .. segments, query or fragment',
      'proxy file proxies[0].parameters.timeout "soon": must be a duration like 90s, 15m, 8h, 1h30m, 500ms or a number of seconds',
    ]);
  });

  it('derives ids from endpoints and settles clashes', () => {
    expect(idFromEndpoint('/api/orders')).toBe('api-orders');
    expect(idFromEndpoint('/')).toBe('root');
    expect(idFromEndpoint('/a b/ü')).toBe('a-b');
    const dir = withFile('p.yaml', 'proxies:\n  - { endpoint: /api/orders, target: "http://a" }\n  - { endpoint: /api-orders, target: "http://b" }\n');
    expect(load([...OIDC, '--proxy_config', 'p.yaml'], { cwd: dir }).config.targets.map((t) => t.id)).toEqual(['api-orders', 'api-orders-2']);
  });

  it('needs a default client', () => {
    const dir = withFile('p.yaml', 'proxies:\n  - { endpoint: /proxy, target: "http://a" }\n');
    expect(problemsOf(['--proxy_config', 'p.yaml'], { cwd: dir })).toEqual([
      'proxy file proxies[0].client "default": unknown client; no client is configured (set --oidc_issuer or config file clients)',
    ]);
  });
});

describe('our targets format', () => {
  it('reads every field, with defaults, from the config file and a proxy file together', () => {
    const dir = writeFiles(tempDir(), {
      'th.yaml': `
base_path: /bff
targets:
  - id: orders
    url: https://orders.internal.example.com/api
  - id: catalog
    url: http://catalog.internal:8080
    mountPath: /api/catalog
    client: default
    methods: get, head
    tokenRequirement: user-or-none
    timeout: 5
    headers: { X-Api-Version: "2" }
    passSetCookie: true
    allowMethodOverride: true
    websocket: true
    pool: { connections: 5, keepAliveTimeout: 1s, keepAliveMaxTimeout: 10m }
`,
      'proxy.json': '{ "targets": [{ "id": "public", "url": "https://public.example.com", "tokenRequirement": "none", "headers": { "Authorization": "ApiKey k" } }], "proxies": [{ "endpoint": "/legacy", "target": "http://l" }] }',
    });
    const { config } = load([...OIDC, '--config', 'th.yaml', '--proxy_config', 'proxy.json'], { cwd: dir });
    expect(config.targets.map((t) => [t.id, t.mountPath])).toEqual([
      ['orders', '/bff/targets/orders'],
      ['catalog', '/api/catalog'],
      ['public', '/bff/targets/public'],
      ['legacy', '/legacy'],
    ]);
    expect(config.targets[0]).toMatchObject({ clientId: 'default', methods: DEFAULT_METHODS, tokenRequirement: 'user', timeoutMs: 30_000, pool: DEFAULT_POOL, websocket: false, passSetCookie: false, allowMethodOverride: false });
    expect(config.targets[1]).toEqual({
      id: 'catalog',
      url: 'http://catalog.internal:8080',
      mountPath: '/api/catalog',
      clientId: 'default',
      methods: ['GET', 'HEAD'],
      tokenRequirement: 'user-or-none',
      timeoutMs: 5000,
      headers: { 'X-Api-Version': '2' },
      passSetCookie: true,
      allowMethodOverride: true,
      pool: { connections: 5, keepAliveTimeoutMs: 1000, keepAliveMaxTimeoutMs: 600_000 },
      websocket: true,
      csrf: { mode: 'token', allMethods: false, allowCrossSiteGet: false },
      goErrors: false,
      redirectBareMount: false,
    });
    // A target that sends no token lets cross-site links through: there is no token to ride on.
    expect(config.targets[2]).toMatchObject({ tokenRequirement: 'none', headers: { Authorization: 'ApiKey k' }, csrf: { allowCrossSiteGet: true } });
  });

  it('allows a none target without any client', () => {
    const dir = withFile('th.yaml', 'targets:\n  - { id: open, url: "https://open.example.com", tokenRequirement: none }\n');
    expect(load(['--config', 'th.yaml'], { cwd: dir }).config.targets).toHaveLength(1);
  });

  it('refuses bad mounts, collisions, unknown clients, bad urls and headers', () => {
    const dir = withFile(
      'th.yaml',
      `targets:
  - { id: a, url: "https://a.example.com/api?x=1" }
  - { id: b, url: "https://b.example.com", mountPath: "/api/" }
  - { id: c, url: "https://c.example.com", mountPath: "/api/../x" }
  - { id: d, url: "https://d.example.com", mountPath: /shared }
  - { id: e, url: "https://e.example.com", mountPath: /shared }
  - { id: f, url: "https://f.example.com", mountPath: /token-handler }
  - { id: g, url: "https://g.example.com", mountPath: /token-handler/v1/user }
  - { id: h, url: "https://h.example.com", mountPath: /login }
  - { id: i, url: "https://i.example.com", client: nobody }
  - { id: j, url: "https://j.example.com", headers: { Host: x, Authorization: y } }
  - { id: a, url: "https://a2.example.com" }
  - { id: k, url: "https://k.example.com", tokenRequirement: always, colour: red }
`,
    );
    expect(problemsOf([...OIDC, '--config', 'th.yaml'], { cwd: dir })).toEqual([
      'config file targets[11].tokenRequirement: must be one of user, user-or-none, none',
      'config file targets[11]: unknown key "colour"; allowed: id, url, mountPath, client, methods, tokenRequirement, timeout, headers, passSetCookie, allowMethodOverride, websocket, csrf, csrfAllMethods, allowCrossSiteGet, pool',
      'config file targets[10].id "a": duplicate target id (also config file targets[0])',
      'config file targets[0].url "https://a.example.com/api?x=1": must not contain a query (?...)',
      'config file targets[1].mountPath "/api/": must be a path like /api/orders: starting with /, without trailing slash, .. segments, query or fragment',
      'config file targets[2].mountPath "/api/../x": must be a path like /api/orders: starting with /, without trailing slash, .. segments, query or fragment',
      'config file targets[4].mountPath "/shared": already the mount path of target "d" (config file targets[3])',
      'config file targets[5].mountPath "/token-handler": would cover the token handler API at /token-handler/v1',
      'config file targets[6].mountPath "/token-handler/v1/user": inside /token-handler/v1 only /token-handler/v1/targets/... is free for targets',
      'config file targets[7].mountPath "/login": collides with the go-token-handler route /login (turn off --legacy_routes or mount elsewhere)',
      'config file targets[8].client "nobody": unknown client; configured clients: default',
      'config file targets[9].headers.Host: managed by the proxy, cannot be set',
      'config file targets[9].headers.Authorization: the access token goes there; only allowed with tokenRequirement: none',
    ]);
  });

  it('frees the legacy routes when they are off', () => {
    const dir = withFile('th.yaml', 'targets:\n  - { id: h, url: "https://h.example.com", mountPath: /login }\n');
    expect(load([...OIDC, '--config', 'th.yaml', '--legacy_routes=false'], { cwd: dir }).config.targets[0]?.mountPath).toBe('/login');
  });
});
