/**
 * What the standalone benchmark scripts (bench/sessions.ts, sweep.ts, instructions.ts, gc-client.ts) read
 * from their command line, and the database servers every benchmark uses unless told otherwise.
 */

/** `--name value` or `--name=value` from `args`; undefined when absent. */
export function cliFlag(args: string[], name: string): string | undefined {
  const i = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i === -1) return undefined;
  return args[i]!.includes('=') ? args[i]!.slice(args[i]!.indexOf('=') + 1) : args[i + 1];
}

/** `cliFlag` as a number; undefined when absent. */
export function cliNumber(args: string[], name: string): number | undefined {
  const value = cliFlag(args, name);
  return value === undefined ? undefined : Number(value);
}

/** The PostgreSQL and Redis servers (TH_TEST_POSTGRES_URL, TH_TEST_REDIS_URL; the tests' defaults otherwise). */
export function storeUrls(env: NodeJS.ProcessEnv = process.env): { postgresUrl: string; redisUrl: string } {
  return {
    postgresUrl: env.TH_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    redisUrl: env.TH_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
  };
}
