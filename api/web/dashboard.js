// The live demo dashboard served at / by pushd. Plain ES module, no build step.
// Parameters come from the URL fragment:
//   /#token=<subscriber JWT>&apiKey=<REST API key>&user=<user id>[&transport=auto|sse|ws][&debug=1]
// With an apiKey but no token, a token is minted through POST /api/ws/connect
// (and minted again when it is about to expire).
import { PushClient } from '/client.js';

const $ = (sel, root = document) => root.querySelector(sel);
const params = new URLSearchParams(location.hash.replace(/^#/, ''));
const cfg = {
  token: params.get('token') || '',
  apiKey: params.get('apiKey') || sessionStorage.getItem('pushd-demo-apiKey') || '',
  user: params.get('user') || '',
  transport: params.get('transport') || 'auto',
  debug: params.get('debug') === '1',
  statsInterval: Number(params.get('statsInterval')) || 2000,
};

function claims(token) {
  try {
    const s = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(s + '='.repeat((4 - (s.length % 4)) % 4)));
  } catch (_) {
    return {};
  }
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { Authorization: 'Bearer ' + cfg.apiKey, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!res.ok) {
    const msg = (json && json.error && json.error.message) || text || res.statusText;
    throw new Error(`${res.status} ${msg}`);
  }
  return json;
}

async function mintToken() {
  const r = await api('POST', '/api/ws/connect', { userId: cfg.user || 'demo' });
  cfg.token = r.token;
  cfg.user = r.userId;
  return r.token;
}

// Returns the fragment's token while it is valid; mints a new one (when the
// API key is known) once it expires — PushClient calls this before every
// (re)connection.
async function tokenProvider() {
  const exp = claims(cfg.token).exp;
  const fresh = cfg.token && (!exp || exp * 1000 - Date.now() > 30000);
  if (fresh || !cfg.apiKey) return cfg.token;
  return mintToken();
}

// ---- UI helpers -----------------------------------------------------------

function time(ts) {
  return new Date(ts || Date.now()).toLocaleTimeString();
}

function toast(title, body, cls = '') {
  const el = document.createElement('div');
  el.className = 'toast ' + cls;
  const t = document.createElement('strong');
  t.textContent = title;
  const b = document.createElement('div');
  b.textContent = body || '';
  el.append(t, b);
  $('#toasts').append(el);
  setTimeout(() => el.remove(), 6000);
  while ($('#toasts').children.length > 5) $('#toasts').firstElementChild.remove();
}

function feed(list, text, ts, max = 100) {
  const li = document.createElement('li');
  const t = document.createElement('time');
  t.textContent = time(ts);
  li.append(t, document.createTextNode(text));
  list.prepend(li);
  while (list.children.length > max) list.lastElementChild.remove();
}

// ---- widgets ------------------------------------------------------------

const widgets = new Map();

function widget(id) {
  let w = widgets.get(id);
  if (w) return w;
  const el = document.createElement('div');
  el.className = 'widget';
  el.dataset.widget = id;
  el.innerHTML = '<div class="name"></div><div class="value">–</div>' +
    '<svg viewBox="0 0 100 40" preserveAspectRatio="none"><polyline points=""></polyline></svg>' +
    '<div class="bar"><span></span></div>';
  $('.name', el).textContent = id;
  $('#widgets').append(el);
  w = { el, values: [] };
  widgets.set(id, w);
  return w;
}

function widgetValue(data) {
  if (typeof data === 'number' || typeof data === 'string') return data;
  if (data && (typeof data.value === 'number' || typeof data.value === 'string')) return data.value;
  return JSON.stringify(data);
}

function updateWidget(p) {
  const w = widget(p.widgetId);
  const v = widgetValue(p.data);
  $('.value', w.el).textContent = typeof v === 'number' ? String(Math.round(v * 100) / 100) : v;
  const n = Number(v);
  if (Number.isFinite(n)) {
    w.values.push(n);
    if (w.values.length > 30) w.values.shift();
    const min = Math.min(...w.values);
    const max = Math.max(...w.values);
    const span = max - min || 1;
    const step = w.values.length > 1 ? 100 / (w.values.length - 1) : 100;
    const pts = w.values.map((x, i) => `${(i * step).toFixed(1)},${(38 - ((x - min) / span) * 36).toFixed(1)}`);
    $('polyline', w.el).setAttribute('points', pts.join(' '));
    $('.bar span', w.el).style.width = Math.max(0, Math.min(100, n)) + '%';
  }
  w.el.classList.add('flash');
  requestAnimationFrame(() => requestAnimationFrame(() => w.el.classList.remove('flash')));
}

// ---- table --------------------------------------------------------------

function applyChange(p) {
  const key = `${p.tableId}/${p.rowId}`;
  const tbody = $('#table tbody');
  let tr = tbody.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
  if (p.action === 'delete') {
    if (tr) {
      tr.classList.add('deleting');
      setTimeout(() => tr.remove(), 800);
    }
  } else {
    const isNew = !tr;
    if (!tr) {
      tr = document.createElement('tr');
      tr.dataset.key = key;
      tr.innerHTML = '<td class="tbl"></td><td class="row"></td><td class="data"></td><td class="when"></td>';
      tbody.prepend(tr);
    }
    $('.tbl', tr).textContent = p.tableId;
    $('.row', tr).textContent = p.rowId;
    $('.data', tr).textContent = p.data === undefined ? '' : JSON.stringify(p.data);
    $('.when', tr).textContent = `${p.action} ${time(p.timestamp)}`;
    tr.classList.remove('created', 'updated');
    void tr.offsetWidth;
    tr.classList.add(isNew ? 'created' : 'updated');
  }
  $('#table-empty').hidden = tbody.children.length > 0;
}

// ---- monitoring -----------------------------------------------------------

let lastStats = null;
let received = 0;
let receivedAt = { n: 0, t: performance.now() };

async function refreshStats() {
  if (!cfg.apiKey) {
    askApiKey();
    return;
  }
  try {
    const s = await api('GET', '/api/ws/stats');
    const set = (k, v) => { const el = $(`[data-stat="${k}"]`); if (el) el.textContent = v; };
    set('totalConnections', s.totalConnections);
    set('uniqueUsers', s.uniqueUsers);
    set('sse', (s.transports && s.transports.sse) ?? '–');
    set('ws', (s.transports && s.transports.ws) ?? '–');
    const q = s.queueStats || {};
    set('pendingMessages', q.pendingMessages ?? '–');
    set('deliveredMessages', q.deliveredMessages ?? '–');
    set('expiredMessages', q.expiredMessages ?? '–');
    if (lastStats && q.deliveredMessages !== undefined) {
      const dt = (s.timestamp - lastStats.timestamp) / 1000;
      const d = q.deliveredMessages - (lastStats.queueStats || {}).deliveredMessages;
      if (dt > 0 && d >= 0) set('rate', (d / dt).toFixed(1));
    }
    lastStats = s;
    $('#stats-note').textContent = `updated ${time(s.timestamp)}`;
  } catch (err) {
    $('#stats-note').textContent = 'stats: ' + err.message;
  }
  const now = performance.now();
  const rate = ((received - receivedAt.n) * 1000) / (now - receivedAt.t);
  receivedAt = { n: received, t: now };
  $('[data-stat="localRate"]').textContent = rate.toFixed(1);
}

// Without an API key the monitoring panel and the push form cannot call the
// REST API: ask for the key inline (kept for this tab in sessionStorage).
function askApiKey() {
  const note = $('#stats-note');
  if (note.querySelector('form')) return;
  note.textContent = '';
  const f = document.createElement('form');
  f.className = 'apikey';
  f.innerHTML = '<label>API key for stats and test pushes <input name="apiKey" autocomplete="off"></label><button type="submit">Use</button>';
  f.addEventListener('submit', (ev) => {
    ev.preventDefault();
    cfg.apiKey = String(new FormData(f).get('apiKey') || '').trim();
    if (!cfg.apiKey) return;
    sessionStorage.setItem('pushd-demo-apiKey', cfg.apiKey);
    note.textContent = '';
    refreshStats();
  });
  note.append(f);
}

// ---- the push form ----------------------------------------------------------

function showFields() {
  const kind = $('#push-form [name=kind]').value;
  for (const l of document.querySelectorAll('#push-form label[data-for]')) {
    l.hidden = !l.dataset.for.split(' ').includes(kind);
  }
  $('#push-form [name=userId]').closest('label').hidden = kind === 'broadcast';
}

async function sendPush(ev) {
  ev.preventDefault();
  if (!cfg.apiKey) {
    $('#push-result').textContent = 'enter the API key in the monitoring panel first';
    askApiKey();
    return;
  }
  const f = new FormData(ev.target);
  const kind = f.get('kind');
  const userId = f.get('userId') || cfg.user;
  let path;
  let body;
  try {
    switch (kind) {
      case 'dashboard':
        path = '/api/ws/push/dashboard';
        body = { userId, widgetId: f.get('widgetId'), data: { value: Number(f.get('value')) } };
        break;
      case 'notification':
        path = '/api/ws/push/notification';
        body = { userId, title: f.get('title'), body: f.get('body') };
        break;
      case 'broadcast':
        path = '/api/ws/broadcast';
        body = { title: f.get('title'), body: f.get('body') };
        break;
      case 'data-change': {
        path = '/api/ws/push/data-change';
        const raw = String(f.get('data') || '').trim();
        body = { userId, tableId: f.get('tableId'), rowId: String(f.get('rowId')), action: f.get('action') };
        if (raw && f.get('action') !== 'delete') body.data = JSON.parse(raw);
        break;
      }
      case 'audit-log':
        path = '/api/ws/push/audit-log';
        body = { userId, entry: { message: f.get('entry'), actor: cfg.user } };
        break;
      default:
        return;
    }
    const r = await api('POST', path, body);
    $('#push-result').textContent = `${r.message || 'accepted'} — id ${r.id || (r.ids || []).join(', ')}`;
    const v = $('#push-form [name=value]');
    if (kind === 'dashboard') v.value = Math.round(Math.random() * 100);
    if (kind === 'data-change') $('#push-form [name=rowId]').value = String(Number(f.get('rowId')) + 1 || 1);
    refreshStats();
  } catch (err) {
    $('#push-result').textContent = 'error: ' + err.message;
  }
}

async function burst() {
  const ids = ['cpu', 'memory', 'requests', 'latency'];
  const messages = [];
  for (let i = 0; i < 20; i++) {
    messages.push({ kind: 'dashboard', userId: cfg.user, widgetId: ids[i % ids.length], data: { value: Math.round(Math.random() * 100) } });
  }
  try {
    const r = await api('POST', '/api/ws/push/batch', { messages });
    $('#push-result').textContent = `${r.message || 'accepted'} — ${(r.ids || []).length} messages`;
  } catch (err) {
    $('#push-result').textContent = 'error: ' + err.message;
  }
}

// ---- wiring -------------------------------------------------------------------

function setBadges(client, s) {
  const st = $('#status');
  st.textContent = s.status + (s.attempt ? ` (${s.attempt})` : '');
  st.className = 'badge status-' + s.status;
  $('#transport').textContent = s.transport || '—';
  $('#role').textContent = client.isLeader ? 'leading tab' : 'shared from another tab';
}

function start() {
  $('#user').textContent = cfg.user || claims(cfg.token).sub || '—';
  $('#push-form [name=userId]').value = cfg.user || claims(cfg.token).sub || '';
  for (const id of ['cpu', 'memory', 'requests']) widget(id);

  const client = new PushClient({ token: tokenProvider, transport: cfg.transport, debug: cfg.debug, persistLastEventId: true });
  window.pushDemo = { client, cfg };
  client.on('status', (s) => setBadges(client, s));
  client.on('leader', () => setBadges(client, { status: client.status, transport: client.transport }));
  client.subscribe('*', (m) => {
    if (m.type === 'heartbeat') return;
    received++;
    feed($('#events'), `${m.type}${m.id ? ' ' + m.id : ''} ${JSON.stringify(m.payload)}`, m.timestamp, 50);
    $('[data-stat="lastEventId"]').textContent = client.lastEventId || '–';
  });
  client.subscribe('dashboard_update', (m) => updateWidget(m.payload));
  client.subscribe('data_change', (m) => applyChange(m.payload));
  client.subscribe('notification', (m) => toast(m.payload.title, m.payload.body));
  client.subscribe('audit_log', (m) => {
    const e = m.payload.entry;
    feed($('#audit'), typeof e === 'string' ? e : (e && e.message) || JSON.stringify(e), m.payload.timestamp || m.timestamp);
  });
  client.on('reset', (p) => toast('History incomplete', `Server could not replay everything (${p.reason}); showing live data from here.`, 'reset'));
  client.on('disconnect', (p) => toast('Disconnected by the server', p.reason || '', 'bye'));
  client.on('error', (e) => feed($('#events'), `client error: ${e.code} ${e.message}`));
  client.connect();

  $('#push-form').addEventListener('submit', sendPush);
  $('#push-form [name=kind]').addEventListener('change', showFields);
  $('#burst').addEventListener('click', burst);
  showFields();
  refreshStats();
  setInterval(refreshStats, cfg.statsInterval);
}

async function main() {
  if (cfg.apiKey) sessionStorage.setItem('pushd-demo-apiKey', cfg.apiKey);
  if (cfg.token) return start();
  if (cfg.apiKey) {
    try {
      await mintToken();
      return start();
    } catch (err) {
      $('#setup-error').textContent = err.message;
    }
  }
  $('#setup').hidden = false;
  $('#app').hidden = true;
  $('#setup-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const p = new URLSearchParams({ apiKey: f.get('apiKey'), user: f.get('user') || 'demo' });
    location.hash = p.toString();
    location.reload();
  });
}

main();
