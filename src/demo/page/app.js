// The demo app: plain browser JavaScript, no token anywhere. axios sends the XSRF-TOKEN cookie back as
// the X-XSRF-TOKEN header on same-origin requests by itself; with fetch the app does it explicitly.
const api = '/token-handler/v1';
const $ = (id) => document.getElementById(id);

function show(value) {
  $('result').textContent = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
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
    $('user-name').textContent = session.name || session.sub;
    $('user-email').textContent = session.email ? `(${session.email})` : '';
    $('expires').textContent = new Date(Math.min(Date.parse(session.expiresAt), Date.parse(session.idleExpiresAt))).toLocaleString();
  }
  return session;
}

async function describeError(error) {
  if (error.response) return { status: error.response.status, body: error.response.data };
  return { error: String(error) };
}

$('call-axios').addEventListener('click', async () => {
  try {
    const response = await axios.get(`${api}/targets/api/api/hello`);
    show({ via: 'axios', status: response.status, body: response.data });
  } catch (error) {
    show({ via: 'axios', ...(await describeError(error)) });
  }
});

$('call-fetch').addEventListener('click', async () => {
  const response = await fetch(`${api}/targets/api/api/hello`, { credentials: 'same-origin' });
  show({ via: 'fetch', status: response.status, body: await response.json() });
});

$('post-axios').addEventListener('click', async () => {
  try {
    const response = await axios.post(`${api}/targets/echo/orders`, { item: 'coffee', quantity: 2 });
    const { method, path, bodyLength, token } = response.data;
    show({ via: 'axios POST', status: response.status, upstreamSaw: { method, path, bodyLength, tokenValid: token && token.valid } });
  } catch (error) {
    show({ via: 'axios POST', ...(await describeError(error)) });
  }
});

$('logout').addEventListener('click', async () => {
  const response = await fetch(`${api}/clients/default/logout`, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { accept: 'application/json', 'X-XSRF-TOKEN': xsrfToken() },
  });
  const body = await response.json();
  if (body.redirectTo) window.location.assign(body.redirectTo);
  else show(body);
});

refreshSession().catch((error) => show({ error: String(error) }));
