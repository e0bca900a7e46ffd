// pushd admin console. Every call is an authenticated REST call with the API
// key the operator typed once; the key lives in this tab's sessionStorage
// and never goes into a URL (the live tail is read with fetch() and a
// streaming body, because EventSource cannot send an Authorization header).

const KEY_STORE = 'pushd.admin.apiKey';
const STATS_EVERY = 2000;
const CHART_POINTS = 60;
const TAIL_ROWS = 200;

const $ = (id) => document.getElementById(id);
let apiKey = sessionStorage.getItem(KEY_STORE);
let statsTimer = null;
let tailAbort = null;
let tailPaused = false;
let tailDropped = 0;
const series = { connections: [], published: [], delivered: [] };
let lastCounters = null;

class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const headers = { Authorization: 'Bearer ' + apiKey };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => null);
  if (res.status === 401) {
    signOut('The API key was refused.');
  }
  if (!res.ok) {
    throw new APIError(res.status, data?.error?.code ?? 'http_' + res.status, data?.error?.message ?? res.statusText);
  }
  return data;
}

function setText(id, v) { $(id).textContent = v; }

function signIn(key) {
  apiKey = key;
  sessionStorage.setItem(KEY_STORE, key);
  $('login').hidden = true;
  $('console').hidden = false;
  $('logout').hidden = false;
  setText('conn-state', 'signed in');
  refreshStats();
  statsTimer = setInterval(refreshStats, STATS_EVERY);
  startTail();
}

function signOut(reason) {
  apiKey = null;
  sessionStorage.removeItem(KEY_STORE);
  clearInterval(statsTimer);
  if (tailAbort) tailAbort.abort();
  $('console').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  setText('conn-state', 'signed out');
  setText('login-error', reason || '');
}

// ---- live view -------------------------------------------------------------

async function refreshStats() {
  try {
    const s = await api('GET', '/api/ws/stats');
    setText('stat-connections', s.totalConnections);
    setText('stat-sse', s.transports?.sse ?? 0);
    setText('stat-ws', s.transports?.ws ?? 0);
    setText('stat-users', s.uniqueUsers);
    setText('stat-nodes', s.nodes ?? 1);
    setText('stat-pending', s.queueStats?.pendingMessages ?? '–');
    if (typeof s.outboxPending === 'number') {
      $('outbox').hidden = false;
      setText('stat-outbox', s.outboxPending);
    }
    push('connections', s.totalConnections);
    setText('stats-error', '');
    await refreshNodes();
  } catch (e) {
    if (apiKey) setText('stats-error', 'stats: ' + e.message);
  }
}

let nodesSupported = true;
async function refreshNodes() {
  if (!nodesSupported) return;
  try {
    const n = await api('GET', '/api/ws/nodes');
    const body = $('nodes').querySelector('tbody');
    body.replaceChildren(...n.nodes.map((node) => row([
      node.id, node.connections, node.transports?.sse ?? 0, node.transports?.ws ?? 0, node.users,
      new Date(node.startedAt).toLocaleString(), ago(node.lastSeen) + ' ago',
    ])));
    $('nodes').hidden = false;
  } catch (e) {
    if (e.status === 404) nodesSupported = false; // a server without GET /api/ws/nodes
  }
}

function push(name, value) {
  const s = series[name];
  s.push(value);
  if (s.length > CHART_POINTS) s.shift();
  drawChart(name);
}

function drawChart(name) {
  const s = series[name];
  const svg = $('chart-' + name);
  const maxV = Math.max(1, ...s);
  // Newest sample at the right edge.
  const pts = s.map((v, i) => `${((CHART_POINTS - s.length + i) / (CHART_POINTS - 1)) * 300},${58 - (v / maxV) * 56}`).join(' ');
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  line.setAttribute('points', pts);
  svg.replaceChildren(line);
  const now = s.length ? s[s.length - 1] : 0;
  setText('chart-' + name + '-now', `${Math.round(now * 10) / 10} (max ${Math.round(maxV * 10) / 10})`);
}

function onCounters(c) {
  if (lastCounters) {
    const dt = (c.timestamp - lastCounters.timestamp) / 1000;
    if (dt > 0) {
      push('published', Math.max(0, c.published - lastCounters.published) / dt);
      push('delivered', Math.max(0, c.delivered - lastCounters.delivered) / dt);
    }
  }
  lastCounters = c;
}

// ---- look up a user --------------------------------------------------------

let lookedUp = null;
let lookupTimer = null;

async function lookup(user) {
  lookedUp = user;
  setText('lookup-error', '');
  try {
    const r = await api('GET', '/api/ws/connections/' + encodeURIComponent(user));
    const conns = r.connections || [];
    setText('lookup-summary', `${user}: ${conns.length} connection${conns.length === 1 ? '' : 's'}`);
    const body = $('conn-table').querySelector('tbody');
    body.replaceChildren(...conns.map((c) => {
      const tr = row([c.transport, c.node || '—', c.remoteAddr, c.userAgent, ago(c.connectedAt)]);
      tr.dataset.connection = c.id;
      tr.dataset.connectedAt = c.connectedAt;
      return tr;
    }));
    $('conn-table').hidden = conns.length === 0;
    $('disconnect-form').hidden = conns.length === 0;
  } catch (e) {
    setText('lookup-error', e.message);
  }
}

function tickConnectedFor() {
  for (const tr of $('conn-table').querySelectorAll('tbody tr')) {
    tr.lastElementChild.textContent = ago(Number(tr.dataset.connectedAt));
  }
}

async function disconnect(user, reason) {
  try {
    const r = await api('POST', '/api/ws/disconnect/' + encodeURIComponent(user), reason ? { reason } : undefined);
    setText('lookup-summary', `${user}: ${r.disconnected} connection${r.disconnected === 1 ? '' : 's'} ended`);
    setTimeout(() => lookup(user), 300);
    refreshStats();
  } catch (e) {
    setText('lookup-error', e.message);
  }
}

// ---- test push -------------------------------------------------------------

async function sendPush() {
  const kind = $('push-kind').value;
  const body = { title: $('push-title').value, body: $('push-body').value };
  let path = '/api/ws/broadcast';
  if (kind === 'notification') {
    body.userId = $('push-user').value;
    path = '/api/ws/push/notification';
  }
  try {
    const r = await api('POST', path, body);
    setText('push-result', `stored as ${r.id}`);
  } catch (e) {
    setText('push-result', `refused (${e.code}): ${e.message}`);
  }
}

// ---- live tail -------------------------------------------------------------

function tailStatus(text, cls) {
  const el = $('tail-status');
  el.textContent = text;
  el.className = 'badge ' + (cls || '');
}

async function startTail() {
  if (tailAbort) tailAbort.abort();
  const abort = new AbortController();
  tailAbort = abort;
  lastCounters = null;
  const user = $('tail-user').value.trim();
  const path = '/api/ws/admin/tail' + (user ? '?userId=' + encodeURIComponent(user) : '');
  let delay = 1000;
  while (!abort.signal.aborted && apiKey) {
    tailStatus('connecting');
    try {
      const res = await fetch(path, { headers: { Authorization: 'Bearer ' + apiKey }, signal: abort.signal, cache: 'no-store' });
      if (res.status === 401) { signOut('The API key was refused.'); return; }
      if (!res.ok) throw new Error('HTTP ' + res.status);
      tailStatus('open', 'open');
      delay = 1000;
      await readSSE(res.body, abort.signal, onTailEvent);
    } catch (e) {
      if (abort.signal.aborted) return;
      tailStatus('reconnecting: ' + e.message, 'error');
    }
    if (abort.signal.aborted) return;
    await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random() / 2)));
    delay = Math.min(delay * 2, 15000);
  }
}

// readSSE parses a text/event-stream body and calls onEvent(name, data).
async function readSSE(body, signal, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  signal.addEventListener('abort', () => reader.cancel().catch(() => {}), { once: true });
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error('stream ended');
    buf += value;
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent(name, JSON.parse(data.join('\n')));
    }
  }
}

function onTailEvent(name, data) {
  if (name === 'counters') return onCounters(data);
  if (name === 'dropped') {
    tailDropped += data.count;
    setText('tail-dropped', `${tailDropped} skipped (the console fell behind)`);
    return;
  }
  if (name !== 'message' || tailPaused) return;
  const to = data.broadcast ? 'everyone' + (data.excludeUserIds ? ' but ' + data.excludeUserIds.join(', ') : '') : data.userId;
  const tr = row([new Date(data.timestamp).toLocaleTimeString(), data.type, to, data.id, JSON.stringify(data.payload)]);
  tr.dataset.id = data.id;
  tr.className = 'new';
  tr.lastElementChild.className = 'payload';
  tr.lastElementChild.title = JSON.stringify(data.payload, null, 2);
  const list = $('tail-list');
  list.prepend(tr);
  while (list.children.length > TAIL_ROWS) list.lastElementChild.remove();
}

// ---- helpers ---------------------------------------------------------------

function row(cells) {
  const tr = document.createElement('tr');
  for (const c of cells) {
    const td = document.createElement('td');
    td.textContent = String(c ?? '');
    tr.append(td);
  }
  return tr;
}

function ago(ms) {
  let s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + 's';
  const m = Math.floor(s / 60); s %= 60;
  if (m < 60) return `${m}m ${s}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

// ---- wiring ----------------------------------------------------------------

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const key = $('api-key').value.trim();
  apiKey = key;
  try {
    await api('GET', '/api/ws/stats'); // check the key before keeping it
    $('api-key').value = '';
    signIn(key);
  } catch (e) {
    if (e.status !== 401) setText('login-error', e.message);
  }
});
$('logout').addEventListener('click', () => signOut(''));
$('lookup-form').addEventListener('submit', (ev) => { ev.preventDefault(); lookup($('lookup-user').value.trim()); });
$('disconnect-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (lookedUp) disconnect(lookedUp, $('disconnect-reason').value.trim());
});
$('push-kind').addEventListener('change', () => { $('push-user-label').hidden = $('push-kind').value !== 'notification'; });
$('push-form').addEventListener('submit', (ev) => { ev.preventDefault(); sendPush(); });
$('tail-form').addEventListener('submit', (ev) => { ev.preventDefault(); startTail(); });
$('tail-pause').addEventListener('click', () => {
  tailPaused = !tailPaused;
  $('tail-pause').textContent = tailPaused ? 'Resume' : 'Pause';
});
lookupTimer = setInterval(tickConnectedFor, 1000);

if (apiKey) signIn(apiKey);
