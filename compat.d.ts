// Types of feishu-transport/compat: the subset of @larksuiteoapi/node-sdk's WSClient that
// OpenClaw uses, backed by FeishuTransport.
import type { FeishuTransport } from './index'

/** The SDK's Domain enum. */
export declare const Domain: { readonly Feishu: 0; readonly Lark: 1 }
/** The SDK's LoggerLevel enum. */
export declare const LoggerLevel: { readonly fatal: 0; readonly error: 1; readonly warn: 2; readonly info: 3; readonly debug: 4; readonly trace: 5 }

/** The SDK's logger shape: one method per level, called with `('[ws]', message)`. */
export interface CompatLogger {
  error(...msg: any[]): void
  warn(...msg: any[]): void
  info(...msg: any[]): void
  debug(...msg: any[]): void
  trace(...msg: any[]): void
}

export interface WSClientParams {
  appId: string
  appSecret: string
  /** `Domain.Feishu` (default), `Domain.Lark`, or a base URL. */
  domain?: number | string
  /** Accepted for drop-in compatibility and not used (discovery runs natively); a warning says so. */
  httpInstance?: unknown
  /** A proxy agent: its proxy URL is read (https-proxy-agent, socks-proxy-agent) or the constructor throws. */
  agent?: unknown
  /** A proxy URL, used instead of `agent`. */
  proxy?: string | null
  loggerLevel?: number
  logger?: CompatLogger
  /** `false`: no reconnects; the first disconnect ends the client (onError). */
  autoReconnect?: boolean
  /** Appended to the User-Agent as `source/<source>`. */
  source?: string
  handshakeTimeoutMs?: number
  /** `pingTimeout` (seconds): silence after a ping before the socket is presumed dead. */
  wsConfig?: { pingTimeout?: number }
  onReady?(): void
  /** Fires only when the client has given up; the message starts with "WebSocket reconnect exhausted after N attempts". */
  onError?(error: Error): void
  /** Once per lost connection (not per retry). */
  onReconnecting?(): void
  onReconnected?(): void
}

export interface EventDispatcherLike {
  invoke(data: unknown, params?: { needCheck?: boolean }): unknown | Promise<unknown>
}

export declare class WSClient {
  constructor(params: WSClientParams)
  /** Arms dispatching and resolves at once (SDK parity); the connection runs in the background. */
  start(params: { eventDispatcher: EventDispatcherLike }): Promise<void>
  /** Stops for good, without calling onError. */
  close(params?: { force?: boolean }): void
  getReconnectInfo(): { lastConnectTime: number; nextConnectTime: number }
  getConnectionStatus(): {
    state: 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'failed'
    lastConnectTime?: number
    nextConnectTime?: number
    reconnectAttempts: number
  }
  /** The underlying transport, once started: `status()`, `dropConnection()`. */
  readonly transport: FeishuTransport | null
}
