// Vite dev-server proxy for local development of a single-page app against token-handler, in the URL
// layout of the ADSP token handler documentation (/auth, /sessions, /api). Same reasoning as
// webpack-dev-server.js beside this file: run token-handler with --trust_proxy and keep `xfwd: true`, set the
// client's redirect URL to http://localhost:5173/auth/callback and register it at the IdP.
import { defineConfig } from 'vite';

const TOKEN_HANDLER = process.env.TOKEN_HANDLER_URL ?? 'http://localhost:9080';
const CLIENT = 'my-client';
const TARGET = 'my-upstream-api';
const TENANT = process.env.ADSP_TENANT ?? 'urn:ads:platform:tenant-service:v2:/tenants/REPLACE-ME';

const common = { target: TOKEN_HANDLER, changeOrigin: true, xfwd: true, secure: true, headers: { 'X-ADSP-TENANT': TENANT } };

export default defineConfig({
  server: {
    port: 5173,
    proxy: {
      '/auth': { ...common, rewrite: (path: string) => path.replace(/^\/auth/, `/token-handler/v1/clients/${CLIENT}`) },
      '^/sessions$': { ...common, rewrite: () => '/token-handler/v1/sessions' },
      '/api': { ...common, ws: true, rewrite: (path: string) => path.replace(/^\/api/, `/token-handler/v1/targets/${TARGET}`) },
    },
  },
});
