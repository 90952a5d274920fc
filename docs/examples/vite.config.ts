// Vite dev-server proxy for local development of a single-page app against token-handler, in the URL
// layout of the ADSP token handler documentation (/auth, /sessions, /api). Same reasoning as
// webpack-dev-server.js beside this file: run token-handler with --trust_proxy (loopback is enough) and
// keep `xfwd: true` (the proxy then sends X-Forwarded-Host: localhost:5173 and X-Forwarded-Proto: http).
// X-Forwarded-Prefix tells token-handler that its client routes are at /auth here, so the callback URL it
// derives is http://localhost:5173/auth/callback (register it at the IdP), a JSON logout's redirectTo is
// /auth/end-session and GET /sessions' logoutUrl is /auth/logout?sid=...
import { defineConfig } from 'vite';

const TOKEN_HANDLER = process.env.TOKEN_HANDLER_URL ?? 'http://localhost:9080';
const CLIENT = 'my-client';
const TARGET = 'my-upstream-api';
const TENANT = process.env.ADSP_TENANT ?? 'urn:ads:platform:tenant-service:v2:/tenants/REPLACE-ME';

/** One proxy entry: `prefix` (here) -> `path` (token-handler). The tenant header is needed to start a login. */
const route = (prefix: string, path: string, extra: object = {}) => ({
  target: TOKEN_HANDLER,
  changeOrigin: true,
  xfwd: true,
  secure: true,
  headers: { 'X-ADSP-TENANT': TENANT, 'X-Forwarded-Prefix': prefix },
  rewrite: (url: string) => url.replace(new RegExp(`^${prefix}`), path),
  ...extra,
});

export default defineConfig({
  server: {
    port: 5173,
    proxy: {
      // Login, callback, logout and end-session of the client: /auth/auth, /auth/callback, /auth/logout, /auth/end-session.
      '/auth/': route('/auth', `/token-handler/v1/clients/${CLIENT}`),
      // GET /sessions (also ?all=true), DELETE /sessions and /sessions/{handle}.
      '/sessions': route('/sessions', '/token-handler/v1/sessions'),
      '/api/': route('/api', `/token-handler/v1/targets/${TARGET}`, { ws: true }),
    },
  },
});
