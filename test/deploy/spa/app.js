/* global window, document, fetch, setTimeout */
// A minimal single-page app in the URL layout of the ADSP token handler documentation. Loaded as a module
// script: it only runs when the server gives it a JavaScript content type.
function xsrf() {
  const entry = document.cookie.split('; ').find((c) => c.startsWith('XSRF-TOKEN='));
  return entry ? decodeURIComponent(entry.slice('XSRF-TOKEN='.length)) : '';
}

async function reply(response) {
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text.slice(0, 200);
  }
  return { status: response.status, contentType: response.headers.get('content-type'), body };
}

window.app = {
  sessions: async (all) => reply(await fetch(all ? '/sessions?all=true' : '/sessions')),
  api: async (method, body) =>
    reply(
      await fetch('/api/orders/7', {
        method,
        headers: method === 'GET' ? {} : { 'content-type': 'application/json', 'X-XSRF-TOKEN': xsrf() },
        body: method === 'GET' ? undefined : JSON.stringify(body),
      }),
    ),
  revoke: async (handle) => reply(await fetch(`/sessions/${handle}`, { method: 'DELETE', headers: { 'X-XSRF-TOKEN': xsrf() } })),
  // As the ADSP docs' apps do: POST the logout, then go where the answer says (the IdP's end-session, via us).
  logout: async () => {
    const answer = await reply(await fetch('/auth/logout', { method: 'POST', headers: { accept: 'application/json', 'X-XSRF-TOKEN': xsrf() } }));
    window.lastLogout = answer;
    if (answer.status === 200) setTimeout(() => (window.location.href = answer.body.redirectTo), 0);
    return answer;
  },
};
document.body.dataset.ready = 'yes';
