import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testClient, testConfig, testTarget } from '../support/config.ts';
import { API, startTokenHandler, type Running } from './support.ts';

describe('OpenAPI document', () => {
  let th: Running;
  beforeAll(async () => {
    th = await startTokenHandler(testConfig({ targets: [testTarget({ id: 'orders', url: 'http://127.0.0.1:1/api', mountPath: '/api/orders', tokenRequirement: 'none' })] }));
  });
  afterAll(async () => th?.app.close());

  it(`is served at ${API}/openapi.json as OpenAPI 3.1 with every route`, async () => {
    const res = await fetch(`${th.base}${API}/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/json');
    const doc = (await res.json()) as {
      openapi: string;
      info: { version: string };
      paths: Record<string, Record<string, { responses?: Record<string, unknown> }>>;
      components: { schemas: Record<string, unknown>; securitySchemes: Record<string, { name: string }> };
    };
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        `${API}/clients/{clientId}/auth`,
        `${API}/clients/{clientId}/callback`,
        `${API}/clients/{clientId}/logout`,
        `${API}/sessions`,
        `${API}/sessions/{handle}`,
        `${API}/clients/{clientId}`,
        `${API}/clients/{clientId}/backchannel-logout`,
        `${API}/targets/{targetId}/{path}`,
        '/api/orders/{path}',
        '/healthz',
        '/ping',
        '/readyz',
        '/metrics',
        `${API}/openapi.json`,
      ]),
    );
    expect(Object.keys(doc.paths[`${API}/clients/{clientId}/logout`]!)).toEqual(expect.arrayContaining(['get', 'post']));
    expect(doc.components.schemas).toHaveProperty('Problem');
    expect(doc.paths[`${API}/clients/{clientId}/auth`]!.get!.responses!['400']).toMatchObject({
      content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
    });
    expect(doc.components.securitySchemes.xsrfHeader!.name).toBe('X-XSRF-TOKEN');
    // Every $ref resolves.
    const text = JSON.stringify(doc);
    for (const [, name] of text.matchAll(/"#\/components\/schemas\/(\w+)"/g)) expect(doc.components.schemas).toHaveProperty(name!);
  });
});

/**
 * Every route Fastify serves, as `printRoutes` lists it: full path (`:param` as `{param}`, a trailing `*`
 * as `{path}`) to its methods. HEAD is left out: Fastify answers it for every GET.
 */
function servedRoutes(app: FastifyInstance): Map<string, Set<string>> {
  const routes = new Map<string, Set<string>>();
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^((?:│ {3}| {4})*)(?:├── |└── )(.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!match) continue;
    stack.length = (match[1] ?? '').length / 4;
    stack.push(match[2] ?? '');
    if (!match[3]) continue;
    const path = stack.join('').replace(/(?<!\/)\*$/, '/*').replace(/:(\w+)/g, '{$1}').replace(/\/\*$/, '/{path}');
    const methods = routes.get(path) ?? new Set<string>();
    for (const method of match[3].split(', ')) if (method !== 'HEAD' || path.endsWith('{path}')) methods.add(method);
    routes.set(path, methods);
  }
  return routes;
}

/** The document's paths to their methods; a target's generic path stands for each target mounted there. */
function documentedRoutes(doc: { paths: Record<string, Record<string, unknown>> }): Map<string, Set<string>> {
  const methods = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch'];
  return new Map(Object.entries(doc.paths).map(([path, item]) => [path, new Set(Object.keys(item).filter((k) => methods.includes(k)).map((k) => k.toUpperCase()))]));
}

describe('OpenAPI document coverage', () => {
  // A configuration that switches on every optional route: the go-token-handler routes, an --oidc_redirect_url
  // callback at a path of its own, targets under the API and at a mount path of their own, /metrics here.
  let th: Running;
  beforeAll(async () => {
    th = await startTokenHandler(testConfig({
      clients: [testClient({ issuer: 'http://127.0.0.1:9/idp', redirectUrl: 'https://app.example.com/auth/return' })],
      targets: [
        testTarget({ id: 'api', url: 'http://127.0.0.1:9/api' }),
        testTarget({ id: 'orders', url: 'http://127.0.0.1:9/orders', mountPath: '/api/orders', methods: ['GET', 'POST'] }),
      ],
    }));
  });
  afterAll(async () => th?.app.close());

  it('describes every route the service serves, with its methods, and nothing it does not serve', async () => {
    const doc = (await (await fetch(`${th.base}${API}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    const documented = documentedRoutes(doc);
    const served = servedRoutes(th.app);
    // Targets are served by one catch-all route that looks the target up per request (targets change with
    // a configuration reload): each mounted target stands for its two routes, every method routed.
    expect(served.get('/{path}')).toBeDefined();
    served.delete('/{path}');
    for (const target of th.th.ctx.config.targets) {
      for (const path of [target.mountPath, `${target.mountPath}/{path}`]) served.set(path, new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD']));
    }
    expect(served.size).toBeGreaterThan(15);
    // A target under the API is one of the generic target paths.
    const asDocumented = (path: string): string => path.replace(new RegExp(`^${API}/targets/[^/{]+`), `${API}/targets/{targetId}`);

    const undocumented: string[] = [];
    for (const [path, methods] of served) {
      const described = documented.get(asDocumented(path));
      for (const method of methods) if (!described?.has(method)) undocumented.push(`${method} ${path}`);
    }
    expect(undocumented, 'served but not in src/routes/openapi.ts').toEqual([]);

    const servedAsDocumented = new Map<string, Set<string>>();
    for (const [path, methods] of served) servedAsDocumented.set(asDocumented(path), new Set([...(servedAsDocumented.get(asDocumented(path)) ?? []), ...methods]));
    const phantom: string[] = [];
    for (const [path, methods] of documented) {
      for (const method of methods) {
        const actual = servedAsDocumented.get(path);
        if (!actual?.has(method) && !(method === 'HEAD' && actual?.has('GET'))) phantom.push(`${method} ${path}`);
      }
    }
    expect(phantom, 'in the document but not served').toEqual([]);
  });
});
