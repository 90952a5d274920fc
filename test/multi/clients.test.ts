/**
 * Several OAuth clients in one token handler, and one browser logged in to two of them at once: each
 * client has its own session cookie, /sessions lists both, logging out of one keeps the other.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { testClient, testConfig } from '../support/config.ts';
import { createBrowser } from '../support/http.ts';
import { API, csrfHeaders, getJson, idpClient, login, startTokenHandler, type Running } from './support.ts';

interface View {
  clientId: string;
  sub: string;
  handle: string;
}
interface Entry {
  clientId: string;
  current: boolean;
  handle: string;
}

describe('two clients in one browser', () => {
  let idp: DevIdp;
  let th: Running;

  beforeAll(async () => {
    idp = await startDevIdp({ clients: [idpClient('orders-app', 'orders'), idpClient('admin-app', 'admin')] });
    th = await startTokenHandler(
      testConfig({
        clients: [
          testClient({ id: 'orders', issuer: idp.issuer, clientId: 'orders-app', clientSecret: 'orders-app-secret', postLoginRedirectUrl: '/orders' }),
          testClient({ id: 'admin', issuer: idp.issuer, clientId: 'admin-app', clientSecret: 'admin-app-secret', postLoginRedirectUrl: '/admin' }),
        ],
      }),
    );
  });
  afterAll(async () => {
    await th?.close();
    await idp?.close();
  });

  it('logs in to both: two cookies, /sessions lists both, each with its own handle', async () => {
    const browser = createBrowser();
    expect((await login(browser, th.base, 'orders')).headers.get('location')).toBe('/orders');
    expect((await login(browser, th.base, 'admin')).headers.get('location')).toBe('/admin');
    expect(browser.cookie('session-orders', th.base)?.httpOnly).toBe(true);
    expect(browser.cookie('session-admin', th.base)?.httpOnly).toBe(true);

    const { body: views } = await getJson<View[]>(browser, `${th.base}${API}/sessions`);
    expect(views.map((v) => v.clientId).sort()).toEqual(['admin', 'orders']);
    expect(new Set(views.map((v) => v.handle)).size).toBe(2);

    const { body: all } = await getJson<Entry[]>(browser, `${th.base}${API}/sessions?all=true`);
    expect(all.filter((e) => e.current).map((e) => e.clientId).sort()).toEqual(['admin', 'orders']);
  });

  it("one client's cookie is never accepted as another's", async () => {
    const browser = createBrowser();
    await login(browser, th.base, 'orders');
    const stolen = createBrowser();
    stolen.jar.setCookie(`session-admin=${browser.cookie('session-orders', th.base)!.value}; Path=/`, th.base);
    expect((await getJson(stolen, `${th.base}${API}/sessions`)).body).toEqual([]);
  });

  it('logging out of one client keeps the other', async () => {
    const browser = createBrowser();
    await login(browser, th.base, 'orders');
    await login(browser, th.base, 'admin');
    const res = await browser.post(`${th.base}${API}/clients/orders/logout`, undefined, { headers: csrfHeaders(browser, th.base) });
    expect(res.status).toBe(200);
    expect(browser.cookie('session-orders', th.base)).toBeUndefined();
    const { body: views } = await getJson<View[]>(browser, `${th.base}${API}/sessions`);
    expect(views.map((v) => v.clientId)).toEqual(['admin']);
  });
});
