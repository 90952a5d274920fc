// webpack-dev-server (v5) proxy for local development of a single-page app against token-handler, in the
// URL layout of the ADSP token handler documentation (/auth, /sessions, /api). Merge `devServer` into
// your webpack.config.js (ESM; for CommonJS use `module.exports = { devServer }`).
//
// The browser only ever talks to the dev server (http://localhost:8080), so the session cookie is set on,
// and sent to, that origin. Two ways to give token-handler the right URLs:
//
//   1. Recommended (this file): run token-handler with --trust_proxy (loopback is enough) and keep
//      `xfwd: true` and the X-Forwarded-Prefix header below: the proxy sends X-Forwarded-Host:
//      localhost:8080 and X-Forwarded-Proto: http, so token-handler derives the callback URL
//      http://localhost:8080/auth/callback (register it at the IdP), and hands out /auth/end-session
//      (a JSON logout's redirectTo) and /auth/logout?sid=... (GET /sessions' logoutUrl).
//   2. The ADSP documentation's own example, as it is (no xfwd, the tenant header on /auth only): without
//      trust_proxy, set `disableVerifyHost: true` on the client (development only, refused in production)
//      and its redirect URL to http://localhost:8080/auth/callback. token-handler then takes /auth from
//      that URL for the URLs it hands out, accepts the redirect URL's origin in its CSRF checks, and
//      /sessions and /api act in the tenant of the session.
//
// With plain http on localhost, token-handler must run in development mode (cookie_secure=auto then sends
// non-Secure cookies over http, and no __Host- prefix).

import process from 'node:process';

const TOKEN_HANDLER = process.env.TOKEN_HANDLER_URL ?? 'http://localhost:9080';
const CLIENT = 'my-client';
const TARGET = 'my-upstream-api';
const TENANT = process.env.ADSP_TENANT ?? 'urn:ads:platform:tenant-service:v2:/tenants/REPLACE-ME';

/** One proxy entry: `prefix` (here) -> `path` (token-handler). The tenant header is needed to start a login. */
const route = (prefix, path, extra = {}) => ({
  context: [prefix],
  target: `${TOKEN_HANDLER}${path}`,
  pathRewrite: { [`^${prefix}`]: '' },
  changeOrigin: true,
  xfwd: true,
  secure: true,
  headers: { 'X-ADSP-TENANT': TENANT, 'X-Forwarded-Prefix': prefix },
  ...extra,
});

export const devServer = {
  port: 8080,
  historyApiFallback: true,
  proxy: [
    // /auth/auth, /auth/callback, /auth/logout, /auth/end-session
    route('/auth', `/token-handler/v1/clients/${CLIENT}`),
    // GET /sessions (also ?all=true), DELETE /sessions and /sessions/{handle}
    route('/sessions', '/token-handler/v1/sessions'),
    route('/api', `/token-handler/v1/targets/${TARGET}`, { ws: true }),
  ],
};

export default { devServer };
