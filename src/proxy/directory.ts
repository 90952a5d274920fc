/**
 * The service directory: targets named by an ADSP service URN (`urn:ads:{namespace}:{service}[:{api}]`)
 * are proxied to the URL the directory has for that URN, as ADSP's own token handler does through its
 * directory service.
 *
 * A directory source is a file (YAML or JSON) or an http(s) URL answering JSON, in either shape:
 * - the ADSP directory's entries, `GET /directory/v2/namespaces/{namespace}/entries`:
 *   `[{ "urn": "urn:ads:platform:tenant-service", "url": "https://..." }, ...]` (other fields ignored);
 * - an object `{ "urn:ads:platform:tenant-service": "https://...", ... }`.
 * Several sources (one per namespace) are merged; a later source's entry for the same URN wins.
 *
 * The directory is read at startup and again every refresh interval. A read that fails keeps the entries
 * read before (logged); a URN without an entry leaves its target unresolved (it answers 503).
 */
import { readDataFile } from '../config/files.ts';

/** `urn:ads:` followed by at least namespace and service. */
export const ADSP_URN = /^urn:ads:[A-Za-z0-9._-]+:[A-Za-z0-9._-]+(?::[^\s:]+)*$/;

export function isUrn(value: string): boolean {
  return value.toLowerCase().startsWith('urn:');
}

/** URNs are compared case-insensitively (ADSP's own ids are lower case). */
function key(urn: string): string {
  return urn.trim().toLowerCase();
}

export interface DirectoryLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface DirectoryOptions {
  sources: readonly string[];
  refreshMs: number;
  timeoutMs: number;
  log: DirectoryLog;
}

export class ServiceDirectory {
  readonly #options: DirectoryOptions;
  #entries: ReadonlyMap<string, string> = new Map();
  #timer: NodeJS.Timeout | undefined;
  #listeners = new Set<() => void>();
  #loading: Promise<void> | undefined;
  #closed = false;

  constructor(options: DirectoryOptions) {
    this.#options = options;
  }

  /** The URL of `urn`, or undefined when the directory has no entry for it (yet). */
  resolve(urn: string): string | undefined {
    return this.#entries.get(key(urn));
  }

  /** Called after every refresh that changed an entry. */
  onChange(listener: () => void): void {
    this.#listeners.add(listener);
  }

  /** Reads every source now; resolves when done (never rejects: a failed source is logged, its entries kept). */
  refresh(): Promise<void> {
    this.#loading ??= this.#load().finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  /** Reads the directory now and then every refresh interval. */
  async start(): Promise<void> {
    await this.refresh();
    if (this.#closed) return;
    this.#timer = setInterval(() => void this.refresh(), this.#options.refreshMs);
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#listeners.clear();
  }

  async #load(): Promise<void> {
    const next = new Map<string, string>();
    let failed = false;
    for (const source of this.#options.sources) {
      try {
        for (const [urn, url] of await this.#read(source)) next.set(key(urn), url);
      } catch (err) {
        failed = true;
        this.#options.log.warn({ directory: source, reason: (err as Error).message }, 'service directory could not be read; keeping its previous entries');
        // Keep what this source gave before: the entries already known for URNs it does not override.
        for (const [urn, url] of this.#entries) if (!next.has(urn)) next.set(urn, url);
      }
    }
    if (this.#closed) return;
    const changed = next.size !== this.#entries.size || [...next].some(([urn, url]) => this.#entries.get(urn) !== url);
    if (!changed) return;
    this.#entries = next;
    this.#options.log.info({ entries: next.size, partial: failed }, 'service directory updated');
    for (const listener of this.#listeners) listener();
  }

  async #read(source: string): Promise<[string, string][]> {
    if (/^https?:\/\//i.test(source)) {
      const response = await fetch(source, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(this.#options.timeoutMs), redirect: 'error' });
      if (!response.ok) {
        await response.body?.cancel();
        throw new Error(`HTTP ${response.status}`);
      }
      return parseEntries(JSON.parse(await readAtMost(response, MAX_DIRECTORY_BYTES)));
    }
    const { data, problems } = readDataFile(source, 'service directory');
    if (problems.length > 0) throw new Error(problems.join('; '));
    return parseEntries(data);
  }
}

/**
 * The most a directory answer may hold. ADSP's entries are ~150 bytes each: this is tens of thousands of
 * them, and keeps a broken or hostile directory from making every refresh read (and parse) without end.
 */
export const MAX_DIRECTORY_BYTES = 4 * 1024 * 1024;

/** The body as text, or an error once it passes `limit` bytes (the rest is not read). */
async function readAtMost(response: Response, limit: number): Promise<string> {
  const declared = Number(response.headers.get('content-length') ?? NaN);
  if (declared > limit) {
    await response.body?.cancel();
    throw new Error(`answer larger than ${limit} bytes (Content-Length ${declared})`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (response.body) {
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel();
        throw new Error(`answer larger than ${limit} bytes`);
      }
      chunks.push(value);
    }
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The (urn, url) pairs of a directory document; throws on a document of neither shape. */
export function parseEntries(data: unknown): [string, string][] {
  const pairs: [string, string][] = [];
  if (Array.isArray(data)) {
    for (const item of data) {
      const { urn, url } = (item ?? {}) as { urn?: unknown; url?: unknown };
      if (typeof urn === 'string' && typeof url === 'string') pairs.push([urn, url]);
    }
    return pairs.filter(([, url]) => isHttpUrl(url));
  }
  if (data !== null && typeof data === 'object') {
    for (const [urn, url] of Object.entries(data)) if (typeof url === 'string') pairs.push([urn, url]);
    return pairs.filter(([, url]) => isHttpUrl(url));
  }
  throw new Error('expected a list of {urn, url} entries or an object of URN: URL');
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}
