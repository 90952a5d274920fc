import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testConfig, testTarget } from '../support/config.ts';
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
