/**
 * One error for every configuration problem found, so an operator fixes them all in one go.
 * Each problem names the setting, where its value came from and what is allowed; secret values
 * are never part of a problem.
 */
export class ConfigError extends Error {
  readonly problems: string[];

  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** The text `main.ts` prints before exiting with status 2. */
export function formatConfigError(error: unknown): string {
  if (!(error instanceof ConfigError)) {
    return `token-handler: cannot load the configuration: ${error instanceof Error ? error.message : String(error)}`;
  }
  const count = error.problems.length;
  return [
    `token-handler: invalid configuration (${count} ${count === 1 ? 'problem' : 'problems'}):`,
    ...error.problems.map((problem) => `  - ${problem}`),
    '',
    'Run `token-handler --help` for the options, or see docs/configuration.md.',
  ].join('\n');
}
