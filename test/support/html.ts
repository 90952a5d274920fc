/**
 * Just enough HTML form parsing for the dev IdP's own pages (login, logout). Not a general parser:
 * it reads <form> elements and their <input>/<button> name/value pairs with regular expressions.
 */

export interface ParsedForm {
  id: string | undefined;
  action: string;
  method: string;
  /** Hidden and pre-filled inputs (name -> value). Buttons are listed separately. */
  fields: Record<string, string>;
  buttons: { id: string | undefined; name: string | undefined; value: string | undefined; form: string | undefined }[];
}

function decode(s: string): string {
  return s
    .replace(/&#(\d+);/g, (_m, n: string) => String.fromCharCode(Number(n)))
    .replace(/&#x([0-9a-f]+);/gi, (_m, n: string) => String.fromCharCode(parseInt(n, 16)))
    .replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

export function attrs(tag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of tag.matchAll(/([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/g)) {
    const key = m[1]?.toLowerCase();
    if (key) out[key] = decode(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return out;
}

/** All forms of a page; buttons associated via `form="id"` attribute are attached to that form. */
export function parseForms(html: string): ParsedForm[] {
  const forms: ParsedForm[] = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const a = attrs(m[1] ?? '');
    const fields: Record<string, string> = {};
    for (const input of (m[2] ?? '').matchAll(/<input\b([^>]*)>/gi)) {
      const ia = attrs(input[1] ?? '');
      if (ia.name) fields[ia.name] = ia.value ?? '';
    }
    forms.push({ id: a.id, action: a.action ?? '', method: (a.method ?? 'get').toUpperCase(), fields, buttons: [] });
  }
  for (const b of html.matchAll(/<button\b([^>]*)>/gi)) {
    const ba = attrs(b[1] ?? '');
    const button = { id: ba.id, name: ba.name, value: ba.value, form: ba.form };
    const owner = ba.form ? forms.find((f) => f.id === ba.form) : undefined;
    owner?.buttons.push(button);
  }
  return forms;
}

/** Text content of the element with the given id, tags stripped. */
export function textById(html: string, id: string): string | undefined {
  const re = new RegExp(`<(\\w+)[^>]*\\bid=["']${id}["'][^>]*>([\\s\\S]*?)</\\1>`, 'i');
  const m = re.exec(html);
  return m?.[2] ? decode(m[2].replace(/<[^>]+>/g, '')).trim() : undefined;
}

/**
 * The form a page submits by itself on load (token-handler's end-session page: a form POST to the IdP and
 * `document.forms[0].submit()`), which a browser follows like a redirect; undefined for any other page.
 */
export function autoSubmittedForm(html: string): ParsedForm | undefined {
  if (!/document\.forms\[0\]\.submit\(\)/.test(html)) return undefined;
  return parseForms(html)[0];
}
