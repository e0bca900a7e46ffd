// Type declarations for pushd's React bindings (/react.js). See client.d.ts.
import type {
  DashboardRealtimeOptions,
  DashboardRealtimeResult,
  Envelope,
  PayloadMap,
  PushContextValue,
  PushProviderProps,
  PushReact,
  ReactLike,
} from './client.js';

export type {
  DashboardRealtimeOptions,
  DashboardRealtimeResult,
  PushContextValue,
  PushProviderProps,
  PushReact,
  ReactLike,
} from './client.js';
export { PushClient } from './client.js';

/** Binds the hooks to your application's React (cached per React instance). */
export declare function createPushReact(React: ReactLike): PushReact;
/** Sets the React used by the bare exports (default: globalThis.React). */
export declare function configureReact(React: ReactLike): void;

export declare function PushProvider(props: PushProviderProps): unknown;
export declare function usePush(): PushContextValue;
export declare function useSubscription<T extends keyof PayloadMap>(type: T | '*', handler: (message: Envelope<T>) => void): void;
export declare function useDashboardRealtime<D = unknown>(options?: DashboardRealtimeOptions<D>): DashboardRealtimeResult<D>;
