// pushd React bindings — an ES module served by pushd at /react.js.
//
// It bundles no React: it uses your application's React, so there is never a
// second copy. Two ways to get the hooks:
//
//   import { createPushReact } from '/react.js';
//   const { PushProvider, usePush, useDashboardRealtime } = createPushReact(React);
//
// or, when React is a global (UMD build) or after configureReact(React):
//
//   import { PushProvider, usePush, useDashboardRealtime } from '/react.js';
//
// Types: /client.d.ts (section "/react.js") and /react.d.ts.

import { PushClient } from './client.js';

const cache = new WeakMap();

/** Binds PushProvider and the hooks to one React instance (cached per instance). */
export function createPushReact(React) {
  if (!React || typeof React.createContext !== 'function' || typeof React.useState !== 'function') {
    throw new TypeError('createPushReact(React): pass your application\'s React module');
  }
  const hit = cache.get(React);
  if (hit) return hit;
  const { createContext, createElement, useContext, useEffect, useMemo, useRef, useState, useCallback } = React;

  const PushContext = createContext(null);
  PushContext.displayName = 'PushContext';

  function snapshot(c) {
    return {
      status: c.status,
      transport: c.transport,
      lastMessage: c.lastMessage,
      lastEventId: c.lastEventId,
      isLeader: c.isLeader,
    };
  }

  /**
   * <PushProvider options={{ token, transport }}> — creates a PushClient,
   * connects it (unless options.autoConnect === false) and disconnects it on
   * unmount. <PushProvider client={client}> uses a client you manage.
   */
  function PushProvider(props) {
    const { client: given, options, children } = props;
    const [client] = useState(() => given || new PushClient({ ...(options || {}), autoConnect: false }));
    const [state, setState] = useState(() => snapshot(client));
    const autoConnect = !given && !(options && options.autoConnect === false);

    useEffect(() => {
      const sync = () => setState(snapshot(client));
      const offs = [client.on('status', sync), client.on('message', sync), client.on('leader', sync)];
      sync();
      if (autoConnect) client.connect();
      return () => {
        offs.forEach((off) => off());
        if (autoConnect) client.disconnect();
      };
    }, [client, autoConnect]);

    const value = useMemo(() => ({
      client,
      status: state.status,
      isConnected: state.status === 'open',
      transport: state.transport,
      lastMessage: state.lastMessage,
      lastEventId: state.lastEventId,
      isLeader: state.isLeader,
      subscribe: (type, handler) => client.subscribe(type, handler),
      connect: () => client.connect(),
      disconnect: () => client.disconnect(),
    }), [client, state]);

    return createElement(PushContext.Provider, { value }, children);
  }

  /** { status, isConnected, transport, subscribe, lastMessage, lastEventId, isLeader, client, connect, disconnect } */
  function usePush() {
    const v = useContext(PushContext);
    if (!v) throw new Error('usePush() must be used inside <PushProvider>');
    return v;
  }

  /** Calls handler for every message of type ('*': all) while the component is mounted. */
  function useSubscription(type, handler) {
    const { client } = usePush();
    const ref = useRef(handler);
    ref.current = handler;
    useEffect(() => client.subscribe(type, (m) => ref.current && ref.current(m)), [client, type]);
  }

  /**
   * The seed's useDashboardRealtime: onUpdate(payload, message) for every
   * dashboard_update; onRefresh() every autoRefreshInterval ms while NOT
   * connected (polling stands in for the stream), and once on a `reset`
   * (the server could not replay everything: reload the dashboard).
   */
  function useDashboardRealtime(opts = {}) {
    const { enabled = true, autoRefreshInterval = 0, onUpdate, onRefresh } = opts;
    const push = usePush();
    const { client, isConnected } = push;
    const updateRef = useRef(onUpdate);
    const refreshRef = useRef(onRefresh);
    updateRef.current = onUpdate;
    refreshRef.current = onRefresh;
    const [lastUpdate, setLastUpdate] = useState(null);

    useEffect(() => {
      if (!enabled) return undefined;
      const offUpdate = client.subscribe('dashboard_update', (m) => {
        setLastUpdate(m.payload);
        if (updateRef.current) updateRef.current(m.payload, m);
      });
      const offReset = client.subscribe('reset', () => {
        if (refreshRef.current) refreshRef.current();
      });
      return () => {
        offUpdate();
        offReset();
      };
    }, [client, enabled]);

    useEffect(() => {
      if (!enabled || !autoRefreshInterval || autoRefreshInterval <= 0 || isConnected) return undefined;
      const id = setInterval(() => {
        if (refreshRef.current) refreshRef.current();
      }, autoRefreshInterval);
      return () => clearInterval(id);
    }, [enabled, autoRefreshInterval, isConnected]);

    const refresh = useCallback(() => refreshRef.current && refreshRef.current(), []);
    return { status: push.status, isConnected, transport: push.transport, lastUpdate, refresh };
  }

  const api = { PushContext, PushProvider, usePush, useSubscription, useDashboardRealtime };
  cache.set(React, api);
  return api;
}

let configured = null;

/** Sets the React used by the bare exports below (default: globalThis.React). */
export function configureReact(React) {
  configured = createPushReact(React);
}

function bound() {
  if (configured) return configured;
  if (globalThis.React) return createPushReact(globalThis.React);
  throw new Error('pushd react.js: call configureReact(React) first, or use createPushReact(React)');
}

export function PushProvider(props) { return bound().PushProvider(props); }
export function usePush() { return bound().usePush(); }
export function useSubscription(type, handler) { return bound().useSubscription(type, handler); }
export function useDashboardRealtime(opts) { return bound().useDashboardRealtime(opts); }

export { PushClient };
