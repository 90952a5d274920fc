import { buildApp } from './app.ts';
import { ConfigError, formatConfigError } from './config/errors.ts';
import { loadConfig } from './config/load.ts';
import { helpOrVersion } from './config/cli.ts';

const SHUTDOWN_GRACE_MS = 25_000;

/** Process entry: read config, build the app, listen, shut down gracefully on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const text = helpOrVersion(argv);
  if (text !== undefined) {
    process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    return;
  }
  let loaded;
  try {
    loaded = loadConfig({ argv, env: process.env, cwd: process.cwd() });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${formatConfigError(err)}\n`);
      process.exit(2);
    }
    throw err;
  }
  const { config, warnings } = loaded;
  const { app } = await buildApp(config);
  for (const warning of warnings) app.log.warn(`CONFIGURATION WARNING: ${warning}`);

  let closing = false;
  const shutdown = (signal: string): void => {
    if (closing) return;
    closing = true;
    app.log.info({ signal }, 'shutting down: finishing in-flight requests');
    const force = setTimeout(() => {
      app.log.error('in-flight requests did not finish in time; exiting');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        app.log.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  await app.listen({ host: config.listen.host, port: config.listen.port });
}

main().catch((err: unknown) => {
  console.error(`token-handler failed to start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
