// The demo app: plain browser JavaScript, no token anywhere. axios sends the XSRF-TOKEN cookie back as
// the X-XSRF-TOKEN header on same-origin requests by itself; with fetch the app does it explicitly.
const api = '/token-handler/v1';
const $ = (id) => document.getElementById(id);

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

function xsrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)XSRF-TOKEN=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : '';
}

async function refreshSession() {
  const response = await fetch(`${api}/sessions`, { credentials: 'same-origin' });
  const [session] = await response.json();
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
  return session;
}

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
  const response = await fetch(`${api}/targets/api/api/hello`, { credentials: 'same-origin' });
  return { status: response.status, body: await bodyOf(response) };
});

onClick('post-axios', 'axios POST', async () => {
  // The echo target replies with everything it received; show only what matters here.
  const response = await axios.post(`${api}/targets/echo/orders`, { item: 'coffee', quantity: 2 });
  const { method, path, bodyLength, token } = response.data;
  return { status: response.status, upstreamSaw: { method, path, bodyLength, tokenValid: Boolean(token && token.valid) } };
});

$('logout').addEventListener('click', async () => {
  try {
    const response = await fetch(`${api}/clients/default/logout`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { accept: 'application/json', 'X-XSRF-TOKEN': xsrfToken() },
    });
    const body = await bodyOf(response);
    if (response.ok && body.redirectTo) window.location.assign(body.redirectTo);
    else show({ via: 'logout', status: response.status, body }, response.status);
  } catch (error) {
    show({ via: 'logout', error: String(error) });
  }
});

refreshSession().catch((error) => show({ error: String(error) }));
