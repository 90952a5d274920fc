/**
 * Auth0 with the flag-configured `default` client: the real process (`node src/main.ts`) run with the
 * arguments of docs/idps/auth0.md's `token-handler` command, against oidc-provider shaped as Auth0
 * (test/support/idps/profiles.ts), whose access tokens are JWTs for an API only when the authorization
 * request names it in `audience`. flows.test.ts runs the guide's config-file client; this runs its flags,
 * `--oidc_auth_params audience=...` above all: the upstream must receive a JWT for the API. The same
 * command without that flag is the control: the same IdP then issues an opaque access token.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoUpstream, type DemoUpstream, type EchoResponse } from '../../src/demo/upstream.ts';
import type { SessionView } from '../../src/routes/sessions.ts';
import { tempDir } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { guideFlags } from '../support/idps/guide.ts';
import { auth0, discoveredJwksUri, type IdpProfile } from '../support/idps/profiles.ts';
import { loginAtDevIdp, logoutAtDevIdp } from '../support/login.ts';
import { onFreePort } from '../support/ports.ts';
import { cleanEnv, NODE, start, type Running } from '../support/process.ts';
import { API, csrfHeaders, getJson } from '../multi/support.ts';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
/** The API identifier of the guide (docs/idps/auth0.md, APIs → Create API). */
const ORDERS_API = 'https://orders-api.example.com';

describe('Auth0 with the flag-configured client (docs/idps/auth0.md, the real process)', () => {
  let profile: IdpProfile;
  let upstream: DemoUpstream;
  const processes: Running[] = [];

  beforeAll(async () => {
    profile = await auth0();
    upstream = await startDemoUpstream({ jwksUrl: await discoveredJwksUri(profile.idp) });
  });
  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await upstream?.close();
    await profile?.idp.close();
  });

  /** The guide's command (`without` flags left out, each with its value), on a free port, with test-only settings. */
  /** The public_url names the port: chosen before the start, another one if it was taken meanwhile. */
  function startFromGuide(without: string[] = []): Promise<string> {
    return onFreePort(async (port) => {
      const base = `http://127.0.0.1:${port}`;
      const dir = tempDir('th-auth0-flags-');
      writeFileSync(join(dir, 'targets.yaml'), `targets:\n  - id: api\n    url: ${upstream.url}/\n`);
      const flags = guideFlags('auth0', { ...profile.replace, 'https://app.example.com': base });
      for (const flag of without) {
        const at = flags.indexOf(flag);
        expect(at, `the guide's command has ${flag}`).toBeGreaterThanOrEqual(0);
        flags.splice(at, 2);
      }
      const running = start(
        NODE,
        [MAIN, ...flags, `--listen_addr=127.0.0.1:${port}`, `--db_path=${join(dir, 'sessions.db')}`, '--oidc_allow_insecure_issuer', '--log_level=info', '--login_rate_limit=0'],
        { cwd: dir, env: cleanEnv({ OIDC_CLIENT_SECRET: 'auth0-secret', HOME: dir }) },
      );
      try {
        // Rejects, with the process's output (EADDRINUSE when the port was taken), if it exits first.
        await running.waitFor(/Server listening at http:\/\/127\.0\.0\.1:\d+/);
      } catch (err) {
        await running.stop();
        throw err;
      }
      processes.push(running);
      return base;
    });
  }

  /** Logs in; returns the authorization request as it reached the IdP. */
  async function login(browser: Browser, base: string): Promise<URL> {
    const idpOrigin = `http://127.0.0.1:${profile.idp.port}`;
    const flow = await loginAtDevIdp(browser, `${base}${API}/clients/default/auth`, { username: 'alice', password: 'alice', idpOrigin });
    await flow.response.body?.cancel();
    expect(flow.response.status).toBe(302);
    return new URL(flow.hops.find((hop) => hop.url.startsWith(idpOrigin))!.url);
  }

  async function echo(browser: Browser, base: string): Promise<EchoResponse> {
    const res = await browser.get(`${base}${API}/targets/api/echo`);
    expect(res.status).toBe(200);
    return (await res.json()) as EchoResponse;
  }

  it('sends --oidc_auth_params audience to the IdP: the API receives a JWT access token for it', async () => {
    const base = await startFromGuide();
    const browser = createBrowser();
    const authorization = await login(browser, base);
    expect(authorization.searchParams.get('audience')).toBe(ORDERS_API);

    const { body } = await getJson<SessionView[]>(browser, `${base}${API}/sessions`);
    expect(body[0]).toMatchObject({ authenticated: true, email: profile.user.email, roles: profile.expectedRoles });

    const { token } = await echo(browser, base);
    expect(token, JSON.stringify(token)).toMatchObject({ present: true, valid: true });
    const { claims } = token as Extract<EchoResponse['token'], { valid: true }>;
    expect(claims.iss).toBe(profile.idp.issuer);
    expect([claims.aud].flat()).toContain(ORDERS_API);
    expect(claims['https://example.com/roles']).toEqual(profile.expectedRoles);

    // --oidc_end_session_url: Auth0's /v2/logout, back to the post-logout URL.
    const before = profile.endSessions();
    const res = await browser.post(`${base}${API}/clients/default/logout`, undefined, { headers: csrfHeaders(browser, base) });
    expect(res.status).toBe(200);
    const { redirectTo } = (await res.json()) as { redirectTo: string };
    const continued = await browser.get(new URL(redirectTo, base));
    expect(continued.headers.get('location')).toBe(`${profile.endSessionPrefix}${encodeURIComponent(`${base}/`)}`);
    const flow = await logoutAtDevIdp(browser, continued.headers.get('location')!, { idpOrigin: `http://127.0.0.1:${profile.idp.port}` });
    expect(flow.url).toBe(`${base}/`);
    expect(profile.endSessions()).toBe(before + 1);
  });

  it('without --oidc_auth_params the same IdP issues an opaque access token (the control)', async () => {
    const base = await startFromGuide(['--oidc_auth_params']);
    const browser = createBrowser();
    const authorization = await login(browser, base);
    expect(authorization.searchParams.has('audience')).toBe(false);
    const { token } = await echo(browser, base);
    expect(token).toMatchObject({ present: true, valid: false, error: expect.stringMatching(/^JWSInvalid/) });
  });
});
