// pushd browser client — an ES module served by pushd at /client.js.
//
//   import { PushClient } from '/client.js';
//   const push = new PushClient({ token: () => fetchToken() });
//   push.on('status', s => console.log(s.status, s.transport));
//   const off = push.subscribe('notification', msg => toast(msg.payload));
//   push.connect();
//
// No dependencies, no build step. Types: /client.d.ts.
//
// Transports: 'sse' (EventSource, token in the access_token query parameter),
// 'ws' (WebSocket, token in a first {"type":"auth"} frame or the query), and
// 'auto' (SSE first, WebSocket when SSE cannot be opened; SSE again on the next
// reconnect). The client resumes from the last event id it saw, reconnects
// with exponential backoff and full jitter, replaces a stream whose heartbeats
// stop, and — unless multiTab is false — shares one stream between all tabs of
// an origin that use the same server and user: one tab leads (Web Locks, or an
// election over BroadcastChannel where Web Locks are missing) and relays every
// message to the others through a BroadcastChannel.

const STORED_TYPES = ['notification', 'dashboard_update', 'data_change', 'audit_log'];
const CONTROL_TYPES = ['connected', 'heartbeat', 'reset', 'disconnect', 'error'];

/** Default options; names follow the seed's WebSocketClientConfig. */
export const DEFAULT_OPTIONS = Object.freeze({
  url: '',
  sseUrl: '',
  wsUrl: '',
  token: null,
  transport: 'auto',
  wsAuth: 'message',
  autoConnect: false,
  reconnectEnabled: true,
  reconnectMaxAttempts: 10,
  reconnectBaseDelay: 1000,
  reconnectMaxDelay: 30000,
  heartbeatInterval: 30000,
  heartbeatTimeout: 10000,
  connectTimeout: 10000,
  lastEventId: null,
  persistLastEventId: false,
  storageKey: '',
  multiTab: true,
  channelName: '',
  withCredentials: false,
  debug: false,
  logger: null,
});

const DEDUP_WINDOW = 2048;

let tabSeq = 0;
function randomId() {
  try {
    if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  } catch (_) { /* insecure context */ }
  return Date.now().toString(36) + '-' + Math.random().toString(36).slice(2) + '-' + (++tabSeq);
}

/** Decodes the claims of a JWT without verifying it (used only to name the shared channel). */
function jwtClaims(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    let s = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) s += '=';
    const bin = atob(s);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (_) {
    return null;
  }
}

function baseHref() {
  return (globalThis.location && globalThis.location.href) || 'http://localhost/';
}

/**
 * Full-jitter exponential backoff: a uniformly random delay in
 * [0, min(maxDelay, baseDelay * 2^(attempt-1))]. attempt counts from 1.
 */
export function backoffDelay(attempt, baseDelay, maxDelay, random = Math.random) {
  const cap = Math.min(maxDelay, baseDelay * Math.pow(2, Math.max(0, attempt - 1)));
  return Math.floor(random() * cap);
}

export class PushClient {
  /** @param {object} options see client.d.ts */
  constructor(options = {}) {
    const o = { ...DEFAULT_OPTIONS, ...options };
    if (!['auto', 'sse', 'ws'].includes(o.transport)) {
      throw new TypeError(`PushClient: transport must be 'auto', 'sse' or 'ws', not ${JSON.stringify(o.transport)}`);
    }
    this.options = o;
    const base = new URL(o.url || '/', baseHref());
    this._sseUrl = new URL(o.sseUrl || joinPath(base, 'sse'), baseHref());
    const ws = new URL(o.wsUrl || joinPath(base, 'ws'), baseHref());
    if (ws.protocol === 'http:') ws.protocol = 'ws:';
    if (ws.protocol === 'https:') ws.protocol = 'wss:';
    this._wsUrl = ws;

    this._tabId = randomId();
    this._handlers = new Map(); // type -> Set(handler)
    this._listeners = new Map(); // event -> Set(listener)
    this._seen = new Set();
    this._seenOrder = [];

    this._status = 'closed';
    this._transport = null;
    this._connectionId = null;
    this._lastMessage = null;
    this._heartbeatInterval = o.heartbeatInterval;
    this._lastEventId = o.lastEventId || null;
    this._started = false;
    this._role = 'none'; // 'none' | 'single' | 'leader' | 'follower'
    this._gen = 0;
    this._attempt = 0;
    this._timers = new Set();
    this._storageKey = null;

    if (o.autoConnect) this.connect();
  }

  // ---- public state ------------------------------------------------------

  /** 'connecting' | 'open' | 'reconnecting' | 'closed' */
  get status() { return this._status; }
  /** 'sse' | 'ws' | null — the transport of the stream in use (the leader's, in a follower tab). */
  get transport() { return this._transport; }
  get isConnected() { return this._status === 'open'; }
  get lastEventId() { return this._lastEventId; }
  get lastMessage() { return this._lastMessage; }
  get connectionId() { return this._connectionId; }
  /** true in the tab that holds the stream (or with multiTab: false). */
  get isLeader() { return this._role === 'leader' || this._role === 'single'; }
  get role() { return this._role; }

  // ---- subscriptions and events -----------------------------------------

  /**
   * Calls handler(envelope) for every message of the type ('*': every type).
   * Returns the function that unsubscribes.
   */
  subscribe(type, handler) {
    if (typeof handler !== 'function') throw new TypeError('PushClient.subscribe: handler must be a function');
    let set = this._handlers.get(type);
    if (!set) this._handlers.set(type, (set = new Set()));
    const h = (env) => handler(env);
    set.add(h);
    if (this._es && type !== '*') this._listenSSE(this._es, type, this._gen);
    return () => {
      set.delete(h);
      if (set.size === 0 && this._handlers.get(type) === set) this._handlers.delete(type);
    };
  }

  /** Listens to client events: status, message, reset, disconnect, error, leader. Returns the remover. */
  on(event, listener) {
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    const l = (v) => listener(v);
    set.add(l);
    return () => set.delete(l);
  }

  // ---- lifecycle ----------------------------------------------------------

  /** Starts the client (idempotent). Resolves once the tab knows its role. */
  async connect() {
    if (this._started) {
      if (this._status !== 'closed') return;
      if (this._role === 'follower' && !this._stoppedByServer) {
        this._post({ t: 'retry', from: this._tabId }); // the leader gave up: ask it to try again
        return;
      }
      this.disconnect(); // start afresh: after a server disconnect or a given-up stream
    }
    this._started = true;
    this._stoppedByServer = false;
    this._attempt = 0;
    this._setStatus('connecting');
    let token = null;
    try {
      token = await this._resolveToken();
    } catch (err) {
      this._log('token provider failed', err);
      this._emit('error', { code: 'token', message: String((err && err.message) || err) });
    }
    if (!this._started) return;
    const claims = jwtClaims(token);
    const user = (claims && claims.sub) || '';
    const key = 'pushd:' + this._sseUrl.origin + this._sseUrl.pathname + ':' + user;
    this._storageKey = this.options.storageKey || key + ':lastEventId';
    if (this.options.persistLastEventId && !this._lastEventId) {
      try {
        this._lastEventId = sessionStorage.getItem(this._storageKey) || null;
      } catch (_) { /* storage unavailable */ }
    }
    const shared = this.options.multiTab && typeof BroadcastChannel === 'function';
    if (!shared) {
      this._role = 'single';
      this._open(token);
      return;
    }
    this._startShared(this.options.channelName || key);
  }

  /** Stops this tab's use of the stream. A following tab takes over if this one led. */
  disconnect() {
    if (!this._started) return;
    this._started = false;
    const wasLeader = this._role === 'leader';
    this._gen++;
    this._closeTransport();
    this._clearTimers();
    if (this._lockAbort) { this._lockAbort.abort(); this._lockAbort = null; }
    if (this._releaseLock) { this._releaseLock(); this._releaseLock = null; }
    if (this._bc) {
      if (wasLeader && this._election) this._post({ t: 'resign', from: this._tabId });
      this._bc.close();
      this._bc = null;
    }
    if (this._onPageHide) {
      globalThis.removeEventListener && globalThis.removeEventListener('pagehide', this._onPageHide);
      this._onPageHide = null;
    }
    if (this._election) this._election.stop();
    this._election = null;
    this._role = 'none';
    this._setStatus('closed');
  }

  // ---- internals: shared stream between tabs -----------------------------

  _startShared(name) {
    const bc = new BroadcastChannel(name);
    this._bc = bc;
    this._role = 'follower';
    bc.onmessage = (ev) => this._onChannel(ev.data);
    this._post({ t: 'hello', from: this._tabId });
    this._log('multi-tab channel', name);
    const locks = globalThis.navigator && navigator.locks;
    if (locks && typeof locks.request === 'function') {
      const abort = typeof AbortController === 'function' ? new AbortController() : null;
      this._lockAbort = abort;
      locks.request(name, abort ? { signal: abort.signal } : {}, () => {
        if (!this._started || this._bc !== bc) return undefined;
        this._lockAbort = null;
        return new Promise((resolve) => {
          this._releaseLock = resolve;
          this._becomeLeader();
        });
      }).catch((err) => {
        if (err && err.name === 'AbortError') return;
        this._log('web lock failed, using one stream for this tab', err);
        if (this._started && this._bc === bc && this._role === 'follower') this._becomeLeader();
      });
    } else {
      this._startElection();
    }
  }

  _becomeLeader() {
    this._log('this tab leads the stream');
    this._role = 'leader';
    this._emit('leader', true);
    this._attempt = 0;
    if (this._stoppedByServer) {
      this._setStatus('closed');
      return;
    }
    this._open(); // resolves a fresh token
  }

  _stepDown() {
    this._log('this tab follows another tab');
    this._gen++;
    this._closeTransport();
    this._clearTimers();
    this._role = 'follower';
    this._emit('leader', false);
  }

  _post(msg) {
    if (!this._bc) return;
    try {
      this._bc.postMessage(msg);
    } catch (err) {
      this._log('BroadcastChannel post failed', err);
    }
  }

  _stateMessage() {
    return {
      t: 'state',
      from: this._tabId,
      status: this._status,
      transport: this._transport,
      connectionId: this._connectionId,
      lastEventId: this._lastEventId,
      heartbeatInterval: this._heartbeatInterval,
      stoppedByServer: !!this._stoppedByServer,
    };
  }

  _onChannel(m) {
    if (!m || typeof m !== 'object' || m.from === this._tabId) return;
    const leader = this._role === 'leader';
    switch (m.t) {
      case 'hello':
        if (leader) this._post(this._stateMessage());
        break;
      case 'retry':
        if (leader && this._status === 'closed' && !this._stoppedByServer) this._retry();
        break;
      case 'state':
        if (this._election) this._election.onMessage(m);
        if (leader) break;
        if (m.lastEventId && !this._lastEventId) this._setLastId(m.lastEventId);
        this._connectionId = m.connectionId || null;
        if (m.heartbeatInterval) this._heartbeatInterval = m.heartbeatInterval;
        if (m.stoppedByServer) this._stopFollower();
        this._setStatus(m.status, m.transport);
        break;
      case 'env':
        if (leader) break;
        this._dispatch(m.env);
        if (m.env && m.env.type === 'disconnect') this._stopFollower();
        break;
      default:
        if (this._election) this._election.onMessage(m);
    }
  }

  _stopFollower() {
    // The server ended the user's stream on purpose: no tab takes over.
    this._stoppedByServer = true;
    if (this._lockAbort) { this._lockAbort.abort(); this._lockAbort = null; }
    if (this._election) this._election.stop();
  }

  // Leader election for browsers without Web Locks: the leader announces
  // itself every second; when it is silent for three, followers claim and the
  // smallest tab id wins. A closing leader resigns so others claim at once.
  _startElection() {
    const self = this;
    const me = this._tabId;
    let lastAlive = Date.now();
    let claiming = null;
    let stopped = false;
    const el = {
      onMessage(m) {
        if (stopped) return;
        if (m.t === 'alive' || m.t === 'state') {
          // A leader exists: stop claiming; of two leaders the smaller id stays.
          lastAlive = Date.now();
          if (claiming) { clearTimeout(claiming.timer); claiming = null; }
          if (self._role === 'leader' && m.from < me) self._stepDown();
        } else if (m.t === 'claim') {
          if (claiming && m.from < me) { clearTimeout(claiming.timer); claiming = null; lastAlive = Date.now(); }
          if (self._role === 'leader') self._post({ t: 'alive', from: me });
        } else if (m.t === 'resign') {
          lastAlive = 0;
          check();
        }
      },
      stop() { stopped = true; clearInterval(tick); if (claiming) clearTimeout(claiming.timer); },
    };
    function check() {
      if (stopped || !self._started) return;
      if (self._role === 'leader') { self._post({ t: 'alive', from: me }); return; }
      if (claiming || Date.now() - lastAlive < 3000) return;
      self._post({ t: 'claim', from: me });
      claiming = {
        timer: setTimeout(() => {
          claiming = null;
          if (!stopped && self._started && self._role === 'follower') {
            self._becomeLeader();
            self._post({ t: 'alive', from: me });
          }
        }, 300),
      };
    }
    const tick = setInterval(check, 1000);
    lastAlive = Date.now() - 2500; // first claim after ~0.5 s unless a leader answers
    this._election = el;
    this._onPageHide = () => { if (this._role === 'leader') this._post({ t: 'resign', from: me }); };
    globalThis.addEventListener && globalThis.addEventListener('pagehide', this._onPageHide);
    setTimeout(check, 600);
  }

  // ---- internals: the stream ---------------------------------------------

  async _resolveToken() {
    const t = this.options.token;
    if (typeof t === 'function') return (await t()) || null;
    return t || null;
  }

  _retry() {
    if (!this._started || !this.isLeader) return;
    this._attempt = 0;
    this._open();
  }

  async _open(token) {
    const gen = ++this._gen;
    this._closeTransport();
    this._setStatus(this._attempt > 0 || this._everOpen ? 'reconnecting' : 'connecting');
    if (token === undefined) {
      try {
        token = await this._resolveToken();
      } catch (err) {
        this._log('token provider failed', err);
        this._emit('error', { code: 'token', message: String((err && err.message) || err) });
        if (gen === this._gen) this._down('token', gen);
        return;
      }
      if (gen !== this._gen || !this._started) return;
    }
    this._token = token;
    const t = this.options.transport;
    this._sseTried = false;
    if (t === 'ws') this._openWS(gen);
    else this._openSSE(gen);
  }

  _connectTimer(gen) {
    this._timer('connect', this.options.connectTimeout, () => {
      this._log(`no connected event within ${this.options.connectTimeout} ms`);
      this._fail('connect_timeout', gen);
    });
  }

  _openSSE(gen) {
    const u = new URL(this._sseUrl);
    if (this._token) u.searchParams.set('access_token', this._token);
    if (this._lastEventId) u.searchParams.set('lastEventId', this._lastEventId);
    this._log('opening SSE', redact(u));
    this._transport = 'sse';
    this._connected = false;
    this._sseTried = true;
    let es;
    try {
      es = new EventSource(u.toString(), { withCredentials: !!this.options.withCredentials });
    } catch (err) {
      this._log('EventSource failed', err);
      this._fail('sse_error', gen);
      return;
    }
    this._es = es;
    this._esTypes = new Set();
    for (const type of STORED_TYPES.concat(CONTROL_TYPES)) this._listenSSE(es, type, gen);
    for (const type of this._handlers.keys()) if (type !== '*') this._listenSSE(es, type, gen);
    es.onmessage = (ev) => this._onFrame(ev.data, gen);
    es.onerror = () => {
      // EventSource would reconnect by itself (and keep its own id); we take
      // over so our backoff, id tracking and token refresh apply.
      if (gen !== this._gen) return;
      this._log('SSE error', this._connected ? 'on an open stream' : 'before the stream opened');
      this._fail(this._connected ? 'sse_closed' : 'sse_error', gen);
    };
    this._connectTimer(gen);
  }

  _listenSSE(es, type, gen) {
    if (this._esTypes.has(type)) return;
    this._esTypes.add(type);
    es.addEventListener(type, (ev) => this._onFrame(ev.data, gen));
  }

  _openWS(gen) {
    const u = new URL(this._wsUrl);
    if (this._lastEventId) u.searchParams.set('lastEventId', this._lastEventId);
    const inQuery = this.options.wsAuth === 'query';
    if (this._token && inQuery) u.searchParams.set('access_token', this._token);
    this._log('opening WebSocket', redact(u));
    this._transport = 'ws';
    this._connected = false;
    let ws;
    try {
      ws = new WebSocket(u.toString());
    } catch (err) {
      this._log('WebSocket failed', err);
      this._fail('ws_error', gen);
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      if (gen !== this._gen) return;
      if (this._token && !inQuery) ws.send(JSON.stringify({ type: 'auth', payload: { token: this._token } }));
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string') this._onFrame(ev.data, gen);
    };
    ws.onclose = (ev) => {
      if (gen !== this._gen) return;
      this._log('WebSocket closed', ev.code, ev.reason);
      if (ev.code === 4000) {
        this._serverDisconnect({ reason: ev.reason || 'disconnected' }, null);
        return;
      }
      if (ev.code === 4001) this._emit('error', { code: 'unauthorized', message: ev.reason || 'unauthorized' });
      this._fail(this._connected ? 'ws_closed' : 'ws_error', gen, ev.code);
    };
    this._connectTimer(gen);
  }

  _onFrame(data, gen) {
    if (gen !== this._gen) return;
    let env;
    try {
      env = JSON.parse(data);
    } catch (err) {
      this._log('malformed frame', data);
      return;
    }
    if (!env || typeof env.type !== 'string') return;
    this._kick(gen);
    switch (env.type) {
      case 'connected': {
        const p = env.payload || {};
        this._connected = true;
        this._everOpen = true;
        this._attempt = 0;
        this._clearTimer('connect');
        if (p.heartbeatInterval > 0) this._heartbeatInterval = p.heartbeatInterval;
        this._connectionId = p.connectionId || null;
        this._kick(gen);
        if (this._transport === 'ws') this._startClientHeartbeat(gen);
        this._log('connected', this._transport, p.connectionId, 'heartbeat', this._heartbeatInterval, 'ms');
        this._setStatus('open');
        this._dispatch(env);
        this._relay(env);
        return;
      }
      case 'heartbeat':
        this._dispatch(env);
        return;
      case 'disconnect':
        this._serverDisconnect(env.payload || {}, env);
        return;
      case 'error':
        this._log('server error frame', env.payload);
        this._dispatch(env);
        return;
      default:
        this._dispatch(env);
        this._relay(env);
    }
  }

  _relay(env) {
    if (this._role === 'leader') this._post({ t: 'env', from: this._tabId, env });
  }

  _serverDisconnect(payload, env) {
    const e = env || { type: 'disconnect', payload, timestamp: Date.now() };
    this._log('server ended the stream:', payload.reason);
    this._stoppedByServer = true;
    this._gen++;
    this._closeTransport();
    this._clearTimers();
    this._dispatch(e);
    this._relay(e);
    this._setStatus('closed');
  }

  _kick(gen) {
    if (!this._connected) return;
    const wait = this._heartbeatInterval + this.options.heartbeatTimeout;
    this._timer('watchdog', wait, () => {
      this._log(`no frame for ${wait} ms: the stream is dead, replacing it`);
      this._fail('heartbeat_timeout', gen);
    });
  }

  _startClientHeartbeat(gen) {
    const send = () => {
      if (gen !== this._gen || !this._ws || this._ws.readyState !== 1) return;
      try {
        this._ws.send(JSON.stringify({ type: 'heartbeat', payload: { clientTime: Date.now() } }));
      } catch (_) { /* closing */ }
      this._timer('clientHeartbeat', this._heartbeatInterval, send);
    };
    this._timer('clientHeartbeat', this._heartbeatInterval, send);
  }

  _fail(reason, gen, code) {
    if (gen !== this._gen || !this._started) return;
    const wasConnected = this._connected;
    this._closeTransport();
    this._clearTimers();
    if (this.options.transport === 'auto' && !wasConnected && this._transport === 'sse' && this._sseTried) {
      this._log('SSE could not be opened (' + reason + '), falling back to WebSocket');
      this._openWS(gen);
      return;
    }
    this._down(reason, gen, code);
  }

  _down(reason, gen, code) {
    this._gen++;
    this._connected = false;
    const o = this.options;
    if (!o.reconnectEnabled) {
      this._emit('error', { code: 'closed', message: reason });
      this._setStatus('closed');
      return;
    }
    this._attempt++;
    if (this._attempt > o.reconnectMaxAttempts) {
      this._log(`giving up after ${o.reconnectMaxAttempts} attempts`);
      this._emit('error', { code: 'max_attempts', message: `no connection after ${o.reconnectMaxAttempts} attempts (${reason})` });
      this._attempt = 0;
      this._setStatus('closed');
      return;
    }
    const delay = backoffDelay(this._attempt, o.reconnectBaseDelay, o.reconnectMaxDelay);
    this._log(`reconnect attempt ${this._attempt}/${o.reconnectMaxAttempts} in ${delay} ms (${reason}${code ? ' ' + code : ''})`);
    this._setStatus('reconnecting', undefined, { attempt: this._attempt, delay, reason });
    this._timer('reconnect', delay, () => {
      if (this._started && this.isLeader) this._open();
    });
  }

  _closeTransport() {
    if (this._es) {
      const es = this._es;
      this._es = null;
      es.onerror = null;
      es.onmessage = null;
      es.close();
    }
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      ws.onclose = null;
      ws.onmessage = null;
      ws.onopen = null;
      try {
        ws.close(1000);
      } catch (_) { /* not open yet */ }
    }
    this._connected = false;
  }

  // ---- internals: helpers ------------------------------------------------

  _dispatch(env) {
    if (!env || typeof env.type !== 'string') return;
    if (env.id) {
      if (this._seen.has(env.id)) {
        this._log('duplicate message ignored', env.id);
        return;
      }
      this._seen.add(env.id);
      this._seenOrder.push(env.id);
      if (this._seenOrder.length > DEDUP_WINDOW) this._seen.delete(this._seenOrder.shift());
      this._setLastId(env.id);
    }
    if (env.type !== 'heartbeat') this._lastMessage = env;
    this._call(this._handlers.get(env.type), env);
    this._call(this._handlers.get('*'), env);
    if (env.type !== 'heartbeat') this._emit('message', env);
    if (env.type === 'reset') this._emit('reset', env.payload || {});
    if (env.type === 'disconnect') this._emit('disconnect', env.payload || {});
  }

  _setLastId(id) {
    this._lastEventId = id;
    if (this.options.persistLastEventId && this._storageKey) {
      try {
        sessionStorage.setItem(this._storageKey, id);
      } catch (_) { /* storage full or unavailable */ }
    }
  }

  _setStatus(status, transport, extra) {
    if (transport !== undefined) this._transport = transport;
    const changed = status !== this._status || this._lastEmittedTransport !== this._transport || extra;
    this._status = status;
    if (!changed) return;
    this._lastEmittedTransport = this._transport;
    const ev = { status, transport: this._transport, leader: this.isLeader, ...(extra || {}) };
    this._log('status', ev);
    this._emit('status', ev);
    if (this._role === 'leader') this._post(this._stateMessage());
  }

  _emit(event, value) {
    this._call(this._listeners.get(event), value);
  }

  _call(set, value) {
    if (!set) return;
    for (const fn of Array.from(set)) {
      try {
        fn(value);
      } catch (err) {
        (this.options.logger || console).error('[pushd] handler threw', err);
      }
    }
  }

  _timer(name, ms, fn) {
    this._clearTimer(name);
    const h = setTimeout(() => {
      this._timers.delete(entry);
      fn();
    }, ms);
    const entry = { name, h };
    this._timers.add(entry);
  }

  _clearTimer(name) {
    for (const e of this._timers) {
      if (e.name === name) {
        clearTimeout(e.h);
        this._timers.delete(e);
      }
    }
  }

  _clearTimers() {
    for (const e of this._timers) clearTimeout(e.h);
    this._timers.clear();
  }

  _log(...args) {
    if (!this.options.debug) return;
    const l = this.options.logger || console;
    (l.debug || l.log).call(l, '[pushd]', ...args);
  }
}

function joinPath(base, name) {
  const u = new URL(base);
  u.pathname = u.pathname.replace(/\/?$/, '/') + name;
  u.search = '';
  u.hash = '';
  return u.toString();
}

function redact(u) {
  const c = new URL(u);
  if (c.searchParams.has('access_token')) c.searchParams.set('access_token', '…');
  return c.toString();
}

export default PushClient;
