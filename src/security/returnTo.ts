const MAX_LENGTH = 2048;

export type ReturnToResult = { ok: true; url: string } | { ok: false; reason: string };

/**
 * Accepts a post-login/logout destination only if it stays on an allowed origin: a path on our own site
 * (`/app?x=1`, never `//host`, `/\host` or anything with a backslash or control character, also after
 * percent-decoding) or an absolute http(s) URL whose origin is allowed. Everything else is an open
 * redirect waiting to happen.
 */
export function checkReturnTo(value: string, allowedOrigins: ReadonlySet<string>): ReturnToResult {
  if (value.length === 0) return { ok: false, reason: 'return_to is empty' };
  if (value.length > MAX_LENGTH) return { ok: false, reason: 'return_to is too long' };
  if (hasForbiddenCharacters(value) || hasForbiddenCharacters(safeDecode(value))) {
    return { ok: false, reason: 'return_to contains backslashes or control characters' };
  }
  if (value.startsWith('/')) {
    const decoded = safeDecode(value);
    if (value.startsWith('//') || decoded.startsWith('//')) {
      return { ok: false, reason: 'return_to must be a path on this site or an allowed origin' };
    }
    // Resolve against a placeholder origin to be sure the path cannot escape it.
    const probe = new URL(value, 'https://return-to.invalid');
    if (probe.origin !== 'https://return-to.invalid') return { ok: false, reason: 'return_to escapes this site' };
    return { ok: true, url: value };
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return { ok: false, reason: 'return_to must be a path starting with / or an absolute URL of an allowed origin' };
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    return { ok: false, reason: `return_to scheme ${url.protocol} is not allowed` };
  }
  if (url.username || url.password) return { ok: false, reason: 'return_to must not carry credentials' };
  if (!allowedOrigins.has(url.origin)) return { ok: false, reason: `return_to origin ${url.origin} is not allowed` };
  return { ok: true, url: url.href };
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

function hasForbiddenCharacters(value: string): boolean {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused here
  return /[\\\u0000-\u001f\u007f]/.test(value);
}
