/** The configuration module's public API (see docs/configuration.md). */
export { loadConfig } from './load.ts';
export type { LoadConfigInput, LoadedConfig } from './load.ts';
export { ConfigError, formatConfigError } from './errors.ts';
export { helpOrVersion } from './cli.ts';
export { helpText, versionText } from './options.ts';
export type * from './types.ts';
