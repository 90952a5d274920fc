// The demo app: plain browser JavaScript, no token anywhere. It uses token-handler's browser client
// (`token-handler/client`, served here as /client.js) for the session, login, logout and fetch with the
// XSRF header; axios sends the XSRF-TOKEN cookie back as X-XSRF-TOKEN on same-origin requests by itself.
import { createClient } from '/client.js';

const api = '/token-handler/v1';
const $ = (id) => document.getElementById(id);
const th = createClient();

/** Shows a reply; `data-seq` counts replies so a test (or a curious reader) can tell a new one arrived. */
function show(value, status) {
  const result = $('result');
  result.textContent = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  result.dataset.seq = String(Number(result.dataset.seq || '0') + 1);
  const badge = $('result-status');
  badge.hidden = status === undefined;
  badge.textContent = status === undefined ? '' : `HTTP ${status}`;
  badge.className = `badge ${status >= 200 && status < 300 ? 'ok' : 'error'}`;
}

/** A line in the events card; `data-event` and `data-detail` let a test read it. */
function logEvent(type, text, detail = '') {
  const item = document.createElement('li');
  item.dataset.event = type;
  item.dataset.detail = detail;
  item.textContent = `${new Date().toLocaleTimeString()}  ${type}: ${text}`;
  $('events').append(item);
}

/** The notice bar: a message and, optionally, one action. */
function notice(text, action, onAction) {
  $('notice').hidden = !text;
  $('notice-text').textContent = text || '';
  const button = $('notice-action');
  button.hidden = !action;
  button.textContent = action || '';
  button.onclick = onAction || null;
}

function render(session) {
  $('anonymous').hidden = Boolean(session);
  $('signed-in').hidden = !session;
  if (session) {
    const name = session.name || session.sub;
    $('user-name').textContent = name;
    $('avatar').textContent = name.slice(0, 1).toUpperCase();
    $('user-email').textContent = session.email ? `(${session.email})` : '';
    $('expires').textContent = new Date(Math.min(Date.parse(session.expiresAt), Date.parse(session.idleExpiresAt))).toLocaleString();
  }
  document.body.dataset.session = session ? 'signed-in' : 'anonymous';
}

th.on('session', (event) => {
  render(event.detail);
  logEvent('session', event.detail ? `signed in as ${event.detail.name || event.detail.sub}` : 'no session');
});
th.on('expiring', (event) => {
  logEvent('expiring', `the session ends in ${event.detail.expiresIn} s`, String(event.detail.expiresIn));
  notice(`Your session ends in about ${Math.ceil(event.detail.expiresIn / 60)} minute(s).`, 'Stay signed in', () => {
    notice('');
    // Any request through token-handler moves the idle end of the session; asking for it is one.
    th.session().catch((error) => show({ error: String(error) }));
  });
});
th.on('expired', () => {
  logEvent('expired', 'the session has ended');
  notice('Your session has ended.', 'Log in again', () => th.login());
});
th.on('loginrequired', (event) => {
  logEvent('loginrequired', `401 login_required from ${new URL(event.detail.url).pathname}`);
  notice('Your session has ended: log in again to continue.', 'Log in', () => th.login());
});
th.on('logout', (event) => {
  logEvent('logout', event.detail.from === 'other-tab' ? 'logged out in another tab' : 'logged out', event.detail.from);
  if (event.detail.from === 'other-tab') notice('You logged out in another tab.');
});

/** A fetch Response's body: JSON when it says so, else text. */
async function bodyOf(response) {
  const type = response.headers.get('content-type') || '';
  return type.includes('json') ? response.json() : response.text();
}

/** Runs one button's call with the buttons disabled meanwhile; a thrown error is shown, never lost. */
function onClick(id, via, call) {
  $(id).addEventListener('click', async () => {
    const buttons = document.querySelectorAll('#signed-in button');
    for (const button of buttons) button.disabled = true;
    try {
      const { status, ...rest } = await call();
      show({ via, status, ...rest }, status);
    } catch (error) {
      if (error.response) show({ via, status: error.response.status, body: error.response.data }, error.response.status);
      else show({ via, error: String(error) });
    } finally {
      for (const button of buttons) button.disabled = false;
    }
  });
}

onClick('call-axios', 'axios', async () => {
  const response = await axios.get(`${api}/targets/api/api/hello`);
  return { status: response.status, body: response.data };
});

onClick('call-fetch', 'fetch', async () => {
  const response = await th.fetch(`${api}/targets/api/api/hello`);
  return { status: response.status, body: await bodyOf(response) };
});

/** The echo target replies with everything it received; show only what matters here. */
function upstreamSaw({ method, path, bodyLength, token }) {
  return { method, path, bodyLength, tokenValid: Boolean(token && token.valid) };
}

onClick('post-axios', 'axios POST', async () => {
  const response = await axios.post(`${api}/targets/echo/orders`, { item: 'coffee', quantity: 2 });
  return { status: response.status, upstreamSaw: upstreamSaw(response.data) };
});

onClick('post-fetch', 'fetch POST', async () => {
  const response = await th.fetch(`${api}/targets/echo/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ item: 'tea', quantity: 1 }),
  });
  const body = await bodyOf(response);
  return response.ok ? { status: response.status, upstreamSaw: upstreamSaw(body) } : { status: response.status, body };
});

$('login').addEventListener('click', (event) => {
  event.preventDefault();
  th.login({ returnTo: '/' });
});

$('logout').addEventListener('click', async () => {
  try {
    await th.logout();
  } catch (error) {
    show({ via: 'logout', status: error.status, error: String(error) }, error.status);
  }
});

th.session().then(render, (error) => show({ error: String(error) }));
