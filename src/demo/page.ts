import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';

const require = createRequire(import.meta.url);
/** axios' package exports hide its browser bundle; find it beside the package.json. */
const axiosBundle = join(dirname(require.resolve('axios/package.json')), 'dist', 'axios.min.js');

/**
 * The browser client (src/client/index.ts, `token-handler/client`) as the page loads it: the compiled
 * module when this runs from dist/, else the source with its types removed (the demo runs with the
 * development dependencies, TypeScript among them).
 */
async function clientModule(): Promise<Buffer> {
  const compiled = new URL('../client/index.js', import.meta.url);
  if (existsSync(compiled)) return readFileSync(compiled);
  const { default: ts } = await import('typescript');
  const source = readFileSync(new URL('../client/index.ts', import.meta.url), 'utf8');
  const { outputText } = ts.transpileModule(source, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } });
  return Buffer.from(outputText);
}

/**
 * Serves the demo single-page app (index.html, app.js), the browser client and axios from the token
 * handler's own origin, as a real deployment would serve the app behind the same reverse proxy.
 * Development only.
 */
export async function demoPage(app: FastifyInstance): Promise<void> {
  const script = 'text/javascript; charset=utf-8';
  const files: Record<string, { body: Buffer; type: string }> = {
    '/': { body: readFileSync(new URL('./page/index.html', import.meta.url)), type: 'text/html; charset=utf-8' },
    '/app.js': { body: readFileSync(new URL('./page/app.js', import.meta.url)), type: script },
    '/client.js': { body: await clientModule(), type: script },
    '/vendor/axios.min.js': { body: readFileSync(axiosBundle), type: script },
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
