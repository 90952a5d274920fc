// webpack-dev-server (v5) proxy for local development of a single-page app against token-handler, in the
// URL layout of the ADSP token handler documentation (/auth, /sessions, /api). Merge `devServer` into
// your webpack.config.js (ESM; for CommonJS use `module.exports = { devServer }`).
//
// The browser only ever talks to the dev server (http://localhost:8080), so the session cookie is set on,
// and sent to, that origin. Two ways to give token-handler the right callback URL:
//
//   1. Recommended: run token-handler with --trust_proxy (loopback is enough) and keep `xfwd: true` below:
//      the proxy sends X-Forwarded-Host: localhost:8080 and X-Forwarded-Proto: http, and token-handler
//      builds the callback URL from them. Set the client's redirect URL to
//      http://localhost:8080/auth/callback and register that URL at the IdP.
//   2. As the ADSP docs describe: without trust_proxy, set `disableVerifyHost: true` on the client
//      (development only, refused in production) and the redirect URL as above.
//
// With plain http on localhost, token-handler must run in development mode (cookie_secure=auto then sends
// non-Secure cookies over http, and no __Host- prefix).

import process from 'node:process';

const TOKEN_HANDLER = process.env.TOKEN_HANDLER_URL ?? 'http://localhost:9080';
const CLIENT = 'my-client';
const TARGET = 'my-upstream-api';
const TENANT = process.env.ADSP_TENANT ?? 'urn:ads:platform:tenant-service:v2:/tenants/REPLACE-ME';

export const devServer = {
  port: 8080,
  historyApiFallback: true,
  proxy: [
    {
      context: ['/auth'],
      target: `${TOKEN_HANDLER}/token-handler/v1/clients/${CLIENT}`,
      pathRewrite: { '^/auth': '' },
      changeOrigin: true,
      xfwd: true,
      secure: true,
      headers: { 'X-ADSP-TENANT': TENANT },
    },
    {
      context: ['/sessions'],
      target: `${TOKEN_HANDLER}/token-handler/v1/sessions`,
      pathRewrite: { '^/sessions': '' },
      changeOrigin: true,
      xfwd: true,
      secure: true,
      headers: { 'X-ADSP-TENANT': TENANT },
    },
    {
      context: ['/api'],
      target: `${TOKEN_HANDLER}/token-handler/v1/targets/${TARGET}`,
      pathRewrite: { '^/api': '' },
      changeOrigin: true,
      xfwd: true,
      secure: true,
      ws: true,
      headers: { 'X-ADSP-TENANT': TENANT },
    },
  ],
};

export default { devServer };
