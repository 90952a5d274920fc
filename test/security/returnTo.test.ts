import { describe, expect, it } from 'vitest';
import { checkReturnTo } from '../../src/security/returnTo.ts';

const allowed = new Set(['https://app.example.com', 'http://127.0.0.1:8080']);

describe('checkReturnTo', () => {
  it.each(['/', '/app', '/app?x=1#frag', '/a/b/../c', 'https://app.example.com/dash', 'http://127.0.0.1:8080/x'])('accepts %s', (value) => {
    expect(checkReturnTo(value, allowed).ok).toBe(true);
  });

  it.each([
    'https://evil.example/',
    '//evil.example/',
    '/\\evil.example',
    '\\\\evil.example',
    '/%2fevil.example',
    '/%2F%2Fevil.example',
    '%2f%2fevil.example',
    'javascript:alert(1)',
    'JaVaScRiPt:alert(1)',
    'data:text/html,x',
    'https://app.example.com.evil.example/',
    'https://user:pw@app.example.com/',
    'http://app.example.com/',
    '/\tevil',
    '/x\r\nSet-Cookie: a=b',
    '/%0d%0aSet-Cookie:a=b',
    'evil.example',
    '',
    `/${'a'.repeat(3000)}`,
    // Encoded and obfuscated variants.
    '/%5cevil.example',
    '/%5C%5Cevil.example',
    '%5c%5cevil.example',
    '/%09/evil.example',
    '/\t/evil.example',
    ' //evil.example',
    '\t//evil.example',
    '\\/evil.example',
    '/%2F/evil.example',
    'https:evil.example',
    'https:/evil.example',
    'http:\\\\evil.example',
    'https://evil.example@app.example.com/',
    'https://app.example.com:443@evil.example/',
    'https://evil.example#@app.example.com',
    'https://evil.example\\@app.example.com/',
    '%68ttps://evil.example',
    'javascript%3aalert(1)',
    'java%0ascript:alert(1)',
    'vbscript:msgbox(1)',
    'file:///etc/passwd',
    '/%00',
  ])('refuses %s', (value) => {
    expect(checkReturnTo(value, allowed).ok).toBe(false);
  });
});
