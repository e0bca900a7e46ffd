// Type declarations for pushd's browser client (/client.js) and React
// bindings (/react.js). Both are plain ES modules served by pushd; no build
// step is needed. With a bundler, copy them (or point a path alias) and keep
// this file beside them.

/** Message types of CONTRACT §3. */
export type StoredType = 'notification' | 'dashboard_update' | 'data_change' | 'audit_log';
export type ControlType = 'connected' | 'heartbeat' | 'reset' | 'disconnect' | 'error';
export type MessageType = StoredType | ControlType;

export interface NotificationPayload {
  title: string;
  body: string;
  icon?: string;
  url?: string;
  data?: Record<string, unknown>;
}
export interface DashboardUpdatePayload<D = unknown> {
  widgetId: string;
  data: D;
  timestamp: number;
}
export interface DataChangePayload<D = unknown> {
  tableId: string;
  rowId: string;
  action: 'create' | 'update' | 'delete';
  data?: D;
  timestamp: number;
}
export interface AuditLogPayload<E = unknown> {
  entry: E;
  timestamp: number;
}
export interface ConnectedPayload {
  connectionId: string;
  userId: string;
  transport: 'sse' | 'ws';
  serverTime: number;
  /** milliseconds */
  heartbeatInterval: number;
}
export interface HeartbeatPayload {
  serverTime: number;
  clientTime?: number;
}
export interface ResetPayload {
  reason: 'trimmed' | 'unknown_id' | string;
}
export interface DisconnectPayload {
  reason: string;
}

export interface PayloadMap {
  notification: NotificationPayload;
  dashboard_update: DashboardUpdatePayload;
  data_change: DataChangePayload;
  audit_log: AuditLogPayload;
  connected: ConnectedPayload;
  heartbeat: HeartbeatPayload;
  reset: ResetPayload;
  disconnect: DisconnectPayload;
  error: { message: string };
}

/** The envelope, identical on SSE and WebSocket. Only stored messages carry an id. */
export interface Envelope<T extends string = string, P = T extends keyof PayloadMap ? PayloadMap[T] : unknown> {
  id?: string;
  type: T;
  payload: P;
  /** milliseconds since the epoch */
  timestamp: number;
}

export type Transport = 'sse' | 'ws';
export type TransportOption = 'auto' | Transport;
export type Status = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** A token, or a function that returns a fresh one; it is called before every (re)connection. */
export type TokenSource = string | null | (() => string | null | Promise<string | null>);

export interface PushClientOptions {
  /** Base URL of pushd ('' = this page's origin). /sse and /ws are resolved against it. */
  url?: string;
  /** Explicit SSE endpoint (e.g. `sseUrl` from POST /api/ws/connect). */
  sseUrl?: string;
  /** Explicit WebSocket endpoint (e.g. `wsUrl` from POST /api/ws/connect). */
  wsUrl?: string;
  /** Subscriber JWT, or a provider called before every (re)connection so an expired token is refreshed. */
  token?: TokenSource;
  /** 'auto' (default): SSE, falling back to WebSocket when SSE cannot be opened; SSE again on the next reconnect. */
  transport?: TransportOption;
  /** How the token travels on /ws: 'message' (default, a first auth frame) or 'query' (access_token). */
  wsAuth?: 'message' | 'query';
  /** Connect from the constructor. Default false (PushProvider: true). */
  autoConnect?: boolean;
  /** Default true. */
  reconnectEnabled?: boolean;
  /** Default 10. After this many failed attempts in a row the status becomes 'closed' and an 'error' event says so. */
  reconnectMaxAttempts?: number;
  /** Default 1000 ms. Delay before attempt n is uniformly random in [0, min(max, base·2^(n-1))] (full jitter). */
  reconnectBaseDelay?: number;
  /** Default 30000 ms. */
  reconnectMaxDelay?: number;
  /** Default 30000 ms; replaced by the server's `heartbeatInterval` from the connected event. */
  heartbeatInterval?: number;
  /** Default 10000 ms: a stream silent for heartbeatInterval + heartbeatTimeout is dead and replaced. */
  heartbeatTimeout?: number;
  /** Default 10000 ms: a stream that has not delivered its `connected` event by then failed to open. */
  connectTimeout?: number;
  /** Resume point for the first connection. */
  lastEventId?: string | null;
  /** Keep the last event id in sessionStorage so a reload resumes. Default false. */
  persistLastEventId?: boolean;
  /** sessionStorage key; default derived from the server URL and the token's `sub`. */
  storageKey?: string;
  /** Share one stream between the tabs of this origin (same server and user). Default true; false = one stream per tab. */
  multiTab?: boolean;
  /** Name of the BroadcastChannel and Web Lock; default derived from the server URL and the token's `sub`. */
  channelName?: string;
  /** EventSource withCredentials (cross-origin cookies). Default false. */
  withCredentials?: boolean;
  /** Log connection decisions with console.debug (or `logger`). Default false. */
  debug?: boolean;
  logger?: Pick<Console, 'debug' | 'error'> | { log(...a: unknown[]): void; error(...a: unknown[]): void };
}

export interface StatusEvent {
  status: Status;
  /** Transport of the stream in use; in a following tab, the leading tab's. */
  transport: Transport | null;
  /** Whether this tab holds the stream. */
  leader: boolean;
  /** With 'reconnecting': attempt number (1-based), delay in ms and the cause. */
  attempt?: number;
  delay?: number;
  reason?: string;
}

export interface ClientError {
  code: 'unauthorized' | 'max_attempts' | 'token' | 'closed' | string;
  message: string;
}

export interface ClientEvents {
  status: StatusEvent;
  /** Every envelope except heartbeats, after deduplication. */
  message: Envelope;
  /** The server could not replay everything since our id: reload your state. */
  reset: ResetPayload;
  /** The server ended the stream on purpose; the client does not reconnect. */
  disconnect: DisconnectPayload;
  error: ClientError;
  /** This tab became (true) or stopped being (false) the leading tab. */
  leader: boolean;
}

export type Unsubscribe = () => void;

export declare const DEFAULT_OPTIONS: Readonly<Required<Omit<PushClientOptions, 'logger'>>> & { logger: null };

/** Full-jitter backoff delay for attempt n (1-based). */
export declare function backoffDelay(attempt: number, baseDelay: number, maxDelay: number, random?: () => number): number;

export declare class PushClient {
  constructor(options?: PushClientOptions);
  readonly options: Readonly<PushClientOptions>;
  readonly status: Status;
  readonly transport: Transport | null;
  readonly isConnected: boolean;
  /** Id of the newest stored message seen (the resume point). */
  readonly lastEventId: string | null;
  readonly lastMessage: Envelope | null;
  readonly connectionId: string | null;
  readonly isLeader: boolean;
  readonly role: 'none' | 'single' | 'leader' | 'follower';

  /** Starts the client; idempotent. After 'closed' (server disconnect, attempts exhausted) it starts again. */
  connect(): Promise<void>;
  /** Stops this tab's use of the stream; if it led, another tab takes over and resumes. */
  disconnect(): void;

  subscribe<T extends keyof PayloadMap>(type: T, handler: (message: Envelope<T>) => void): Unsubscribe;
  subscribe(type: '*', handler: (message: Envelope) => void): Unsubscribe;
  subscribe(type: string, handler: (message: Envelope) => void): Unsubscribe;

  on<E extends keyof ClientEvents>(event: E, listener: (value: ClientEvents[E]) => void): Unsubscribe;
}

export default PushClient;

// ---- /react.js ------------------------------------------------------------
//
// react.js does not bundle React. Either
//   import { createPushReact } from '/react.js';
//   const { PushProvider, usePush, useDashboardRealtime } = createPushReact(React);
// or, when React is on window (UMD build) or you call configureReact(React) once,
//   import { PushProvider, usePush, useDashboardRealtime } from '/react.js';

/** The subset of React that react.js uses. */
export interface ReactLike {
  createContext: any;
  createElement: any;
  useContext: any;
  useEffect: any;
  useMemo: any;
  useRef: any;
  useState: any;
  useCallback: any;
}

export interface PushProviderProps {
  /** An existing client (not connected or disconnected by the provider), or … */
  client?: PushClient;
  /** … options for a client the provider creates, connects (unless autoConnect: false) and disconnects on unmount. */
  options?: PushClientOptions;
  children?: unknown;
}

export interface PushContextValue {
  client: PushClient;
  status: Status;
  isConnected: boolean;
  transport: Transport | null;
  lastMessage: Envelope | null;
  lastEventId: string | null;
  isLeader: boolean;
  subscribe: PushClient['subscribe'];
  connect(): Promise<void>;
  disconnect(): void;
}

export interface DashboardRealtimeOptions<D = unknown> {
  /** Default true. */
  enabled?: boolean;
  /** Poll onRefresh every this many ms while NOT connected (0 = never). */
  autoRefreshInterval?: number;
  /** Called with each dashboard_update payload. */
  onUpdate?: (payload: DashboardUpdatePayload<D>, message: Envelope<'dashboard_update'>) => void;
  /** Reload dashboard state: polled while disconnected, and called on a `reset`. */
  onRefresh?: () => void;
}

export interface DashboardRealtimeResult<D = unknown> {
  status: Status;
  isConnected: boolean;
  transport: Transport | null;
  lastUpdate: DashboardUpdatePayload<D> | null;
}

export interface PushReact {
  PushContext: unknown;
  PushProvider(props: PushProviderProps): unknown;
  usePush(): PushContextValue;
  /** Subscribes for the component's lifetime; the handler may change between renders. */
  useSubscription<T extends keyof PayloadMap>(type: T | '*', handler: (message: Envelope<T>) => void): void;
  useDashboardRealtime<D = unknown>(options?: DashboardRealtimeOptions<D>): DashboardRealtimeResult<D>;
}

/** Binds the hooks to your application's React (cached per React instance). */
export declare function createPushReact(React: ReactLike): PushReact;
/** Sets the React used by the bare exports of react.js. */
export declare function configureReact(React: ReactLike): void;
