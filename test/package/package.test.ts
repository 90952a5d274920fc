/**
 * The package as a user installs and runs it (issue 22.5): the lockfile npm install leaves alone, what a
 * production install must contain, `npm run build` (the demo and its page included), the bin's choice
 * between src/ and dist/, and the `token-handler/client` export as a bundler and TypeScript see it.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, NODE, ROOT, run, start } from '../support/process.ts';

interface PackageJson {
  version: string;
  dependencies: Record<string, string>;
  optionalDependencies: Record<string, string>;
  devDependencies: Record<string, string>;
}
interface LockEntry {
  version?: string;
  hasInstallScript?: boolean;
  dev?: boolean;
  optional?: boolean;
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as PackageJson;
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry & Partial<PackageJson>> };

describe('package-lock.json', () => {
  it('records what npm install would add back: every installed package with an install script says so', () => {
    // A lockfile written from registry metadata alone can miss `hasInstallScript`; the next `npm install`
    // reads the installed package.json and rewrites the tracked lockfile to add it.
    const missing: string[] = [];
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (path === '' || !existsSync(join(ROOT, path, 'package.json'))) continue;
      const installed = JSON.parse(readFileSync(join(ROOT, path, 'package.json'), 'utf8')) as { scripts?: Record<string, string>; gypfile?: boolean };
      const scripts = installed.scripts ?? {};
      // npm runs `node-gyp rebuild` for a binding.gyp without an install script of its own.
      const hasScript = ['preinstall', 'install', 'postinstall'].some((name) => scripts[name] !== undefined) || installed.gypfile === true || existsSync(join(ROOT, path, 'binding.gyp'));
      if (hasScript !== (entry.hasInstallScript === true)) missing.push(`${path}: hasInstallScript ${String(entry.hasInstallScript)}, installed package has one: ${hasScript}`);
    }
    expect(missing).toEqual([]);
  });

  it('matches package.json (npm ci refuses a lockfile that does not)', () => {
    const root = lock.packages['']!;
    expect(root.dependencies).toEqual(pkg.dependencies);
    expect(root.optionalDependencies).toEqual(pkg.optionalDependencies);
    expect(root.devDependencies).toEqual(pkg.devDependencies);
  });
});

/** The modules `entry` loads: statically (at start) and all (dynamic imports too); type-only imports do not count. */
function importGraph(entry: string): { staticFiles: Set<string>; allFiles: Set<string>; packages: Map<string, { file: string; dynamic: boolean }[]> } {
  const staticFiles = new Set<string>();
  const allFiles = new Set<string>();
  const packages = new Map<string, { file: string; dynamic: boolean }[]>();
  const visit = (file: string, reachedStatically: boolean): void => {
    if (reachedStatically ? staticFiles.has(file) : allFiles.has(file)) return;
    allFiles.add(file);
    if (reachedStatically) staticFiles.add(file);
    const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ESNext, true);
    const edge = (specifier: string, dynamic: boolean): void => {
      if (specifier.startsWith('.')) {
        visit(resolve(dirname(file), specifier), reachedStatically && !dynamic);
        return;
      }
      if (specifier.startsWith('node:') || builtinModules.includes(specifier)) return;
      const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!;
      packages.set(name, [...(packages.get(name) ?? []), { file: relative(ROOT, file), dynamic: dynamic || !reachedStatically }]);
    };
    const walk = (node: ts.Node): void => {
      if (ts.isImportDeclaration(node) && !node.importClause?.isTypeOnly && ts.isStringLiteral(node.moduleSpecifier)) {
        const named = node.importClause?.namedBindings;
        const onlyTypes = named && ts.isNamedImports(named) && !node.importClause?.name && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly);
        if (!onlyTypes) edge(node.moduleSpecifier.text, false);
      } else if (ts.isExportDeclaration(node) && !node.isTypeOnly && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
        edge(node.moduleSpecifier.text, false);
      } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0])) {
        edge(node.arguments[0].text, true);
      }
      ts.forEachChild(node, walk);
    };
    walk(source);
  };
  visit(entry, true);
  return { staticFiles, allFiles, packages };
}

describe('a production install (npm ci --omit=dev)', () => {
  // The service's entry points: the process (bin/token-handler.js -> src/main.ts) and the Docker HEALTHCHECK.
  for (const entry of ['src/main.ts', 'src/ops/healthcheck.ts']) {
    it(`has every package ${entry} imports; the store drivers are loaded only when configured`, () => {
      const { packages, allFiles } = importGraph(join(ROOT, entry));
      expect(allFiles.size).toBeGreaterThanOrEqual(entry === 'src/main.ts' ? 50 : 1);
      const production = new Set([...Object.keys(pkg.dependencies), ...Object.keys(pkg.optionalDependencies)]);
      const wrong = [...packages].filter(([name]) => !production.has(name)).map(([name, at]) => `${name} (a development dependency) imported by ${at.map((a) => a.file).join(', ')}`);
      expect(wrong).toEqual([]);
      // An optional dependency may be missing: only a dynamic import (src/store/index.ts) may reach it.
      const eager = [...packages].filter(([name]) => name in pkg.optionalDependencies).flatMap(([name, at]) => at.filter((a) => !a.dynamic).map((a) => `${name} by ${a.file}`));
      expect(eager).toEqual([]);
    });
  }

  it('loads OpenTelemetry only through a dynamic import (src/ops/tracing.ts, when an OTLP endpoint is set)', () => {
    const { packages } = importGraph(join(ROOT, 'src/main.ts'));
    const otel = [...packages].filter(([name]) => name.startsWith('@opentelemetry/'));
    expect(otel.map(([name]) => name)).toContain('@opentelemetry/sdk-trace');
    const eager = otel.flatMap(([name, at]) => at.filter((a) => !a.dynamic).map((a) => `${name} by ${a.file}`));
    expect(eager).toEqual([]);
  });

  it('names better-sqlite3, pg and ioredis optional, and leaves pino-pretty and ws to development', () => {
    expect(Object.keys(pkg.optionalDependencies).sort()).toEqual(['better-sqlite3', 'ioredis', 'pg']);
    for (const name of ['pino-pretty', 'ws', 'oidc-provider', 'axios']) {
      expect(pkg.dependencies).not.toHaveProperty(name);
      expect(pkg.devDependencies).toHaveProperty(name);
    }
  });
});

describe('npm run build, and the package as installed', { timeout: 240_000 }, () => {
  let dir: string;
  /** <dir>/app: a project with token-handler installed (bin, dist, package.json) and its dependencies. */
  let app: string;
  let installed: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'th-package-'));
    app = join(dir, 'app');
    installed = join(app, 'node_modules', 'token-handler');
    mkdirSync(installed, { recursive: true });
    // The build script itself, into the installed copy's dist/.
    execFileSync(NODE, [join(ROOT, 'scripts/build.ts'), '--outDir', join(installed, 'dist')], { stdio: 'pipe', timeout: 200_000 });
    cpSync(join(ROOT, 'bin'), join(installed, 'bin'), { recursive: true });
    cpSync(join(ROOT, 'package.json'), join(installed, 'package.json'));
    for (const name of readdirSync(join(ROOT, 'node_modules'))) {
      if (name === '.bin' || name.startsWith('.')) continue;
      symlinkSync(join(ROOT, 'node_modules', name), join(app, 'node_modules', name));
    }
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'some-spa', private: true, type: 'module' }));
  }, 240_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('compiles the service, the demo and the client, and copies the demo page', () => {
    for (const file of ['main.js', 'demo/run.js', 'demo/page/index.html', 'demo/page/app.js', 'client/index.js', 'client/index.d.ts']) {
      expect(existsSync(join(installed, 'dist', file)), file).toBe(true);
    }
  });

  it('runs dist/ from the bin of an installed package', async () => {
    const result = await run(NODE, [join(installed, 'bin/token-handler.js'), '--version'], { env: cleanEnv(), cwd: app });
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout.trim()).toBe(`token-handler ${pkg.version}`);
  });

  it('runs the built demo (node dist/demo/run.js), serving its page and the compiled client', async () => {
    const demo = start(NODE, [join(installed, 'dist/demo/run.js'), '--log_level', 'warn'], {
      env: cleanEnv({ DEMO_PORT: '0', DEMO_IDP_PORT: '0', DEMO_UPSTREAM_PORT: '0' }),
      cwd: app,
    });
    try {
      const [, url] = await demo.waitFor(/Open (http:\/\/\S+) and log in/);
      const page = await fetch(url!);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<script type="module" src="/app.js">');
      const client = await fetch(new URL('/client.js', url));
      expect(client.status).toBe(200);
      const code = await client.text();
      expect(code).toBe(readFileSync(join(installed, 'dist/client/index.js'), 'utf8'));
      expect(code).toContain('export function createClient');
    } finally {
      expect((await demo.stop()).code).toBe(0);
    }
  });

  it('exports token-handler/client: importable, typed for a browser project, bundled small', async () => {
    // Node's resolver (as bundlers follow package exports).
    const imported = await run(NODE, ['--input-type=module', '-e', "const m = await import('token-handler/client'); console.log(Object.keys(m).sort().join(' '))"], { env: cleanEnv(), cwd: app });
    expect(imported.stdout.trim()).toBe('TokenHandlerClient TokenHandlerError createClient');

    // TypeScript in a browser project (DOM library, no Node types, bundler resolution) sees the types.
    writeFileSync(join(app, 'consumer.ts'), [
      "import { createClient, type Session } from 'token-handler/client';",
      "const th = createClient({ expiringBefore: 120 });",
      "const off = th.on('expiring', (event) => console.log(event.detail.expiresIn.toFixed(0)));",
      "th.on('loginrequired', (event) => { event.preventDefault(); console.log(event.detail.response.status); });",
      "const session: Session | null = await th.session();",
      "await th.fetch('/api/orders', { method: 'POST', body: JSON.stringify({ name: session?.name }) });",
      'off();',
      '// @ts-expect-error: not an event of the client',
      "th.on('nonsense', () => {});",
      'export {};',
    ].join('\n'));
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, target: 'es2022', module: 'esnext', moduleResolution: 'bundler', lib: ['es2022', 'dom'], types: [] },
      files: ['consumer.ts'],
    }));
    const checked = await run(NODE, [tsc, '-p', 'tsconfig.json'], { env: cleanEnv(), cwd: app });
    expect(checked.stdout + checked.stderr).toBe('');
    expect(checked.code).toBe(0);

    // A bundler (Vite, on Rollup's API) resolves the export; the client is a few kB minified.
    writeFileSync(join(app, 'main.js'), "import { createClient } from 'token-handler/client';\nwindow.th = createClient();\n");
    const { build } = await import('vite');
    const output = (await build({ root: app, logLevel: 'silent', configFile: false, build: { write: false, minify: true, lib: { entry: join(app, 'main.js'), formats: ['es'], fileName: 'bundle' } } })) as { output: { type: string; code?: string }[] }[];
    const code = output.flatMap((o) => o.output).filter((chunk) => chunk.type === 'chunk').map((chunk) => chunk.code ?? '').join('');
    expect(code).toContain('token-handler:'); // the client's channel name: the client is in the bundle
    expect(Buffer.byteLength(code)).toBeLessThan(8 * 1024);
  });

  it('runs src/ in a checkout even when an old dist/ is there', async () => {
    const checkout = join(dir, 'checkout');
    mkdirSync(join(checkout, 'dist'), { recursive: true });
    cpSync(join(ROOT, 'bin'), join(checkout, 'bin'), { recursive: true });
    cpSync(join(ROOT, 'package.json'), join(checkout, 'package.json'));
    symlinkSync(join(ROOT, 'src'), join(checkout, 'src'));
    writeFileSync(join(checkout, 'dist/main.js'), "console.log('the stale dist/ ran');\n");
    const result = await run(NODE, [join(checkout, 'bin/token-handler.js'), '--version'], { env: cleanEnv(), cwd: checkout });
    expect(result).toMatchObject({ code: 0, stdout: `token-handler ${pkg.version}\n` });
  });
});
