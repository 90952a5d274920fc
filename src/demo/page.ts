import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';

const require = createRequire(import.meta.url);
/** axios' package exports hide its browser bundle; find it beside the package.json. */
const axiosBundle = join(dirname(require.resolve('axios/package.json')), 'dist', 'axios.min.js');

/**
 * Serves the demo single-page app (index.html, app.js) and axios from the token handler's own origin,
 * as a real deployment would serve the app behind the same reverse proxy. Development only.
 */
export async function demoPage(app: FastifyInstance): Promise<void> {
  const files: Record<string, { body: Buffer; type: string }> = {
    '/': { body: readFileSync(new URL('./page/index.html', import.meta.url)), type: 'text/html; charset=utf-8' },
    '/app.js': { body: readFileSync(new URL('./page/app.js', import.meta.url)), type: 'text/javascript; charset=utf-8' },
    '/vendor/axios.min.js': { body: readFileSync(axiosBundle), type: 'text/javascript; charset=utf-8' },
  };
  for (const [path, file] of Object.entries(files)) {
    app.get(path, async (_request, reply) =>
      reply
        .type(file.type)
        .header('cache-control', 'no-cache')
        .header('content-security-policy', "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
        .header('x-content-type-options', 'nosniff')
        .send(file.body),
    );
  }
}
