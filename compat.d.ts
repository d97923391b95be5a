// Types of feishu-transport/compat: @larksuiteoapi/node-sdk's WSClient, backed by
// FeishuTransport. The constructor takes every option shape the SDK's takes.
import type { FeishuTransport } from './index'

/** The SDK's Domain enum. */
export declare const Domain: { readonly Feishu: 0; readonly Lark: 1 }
/** The SDK's LoggerLevel enum. */
export declare const LoggerLevel: { readonly fatal: 0; readonly error: 1; readonly warn: 2; readonly info: 3; readonly debug: 4; readonly trace: 5 }

/** The SDK's logger shape: one method per level, called with `('[ws]', message)`. */
export interface CompatLogger {
  error(...msg: any[]): void | Promise<void>
  warn(...msg: any[]): void | Promise<void>
  info(...msg: any[]): void | Promise<void>
  debug(...msg: any[]): void | Promise<void>
  trace(...msg: any[]): void | Promise<void>
}

/** The discovery request compat sends through an `httpInstance`, as the SDK sends it. */
export interface CompatDiscoveryRequest {
  method: 'post'
  /** `{domain}/callback/ws/endpoint`, e.g. `https://open.feishu.cn/callback/ws/endpoint`. */
  url: string
  data: { AppID: string; AppSecret: string }
  headers: { locale: string; 'User-Agent': string }
  /** 15 000 ms, the SDK's. */
  timeout: number
}

/** An axios-style instance (the SDK's `HttpInstance`): only `request` is used. */
export interface CompatHttpInstance {
  request(opts: CompatDiscoveryRequest): Promise<unknown>
}

export interface WSClientParams {
  appId: string
  /** Optional in the type, as in the SDK's; start() rejects with INVALID_CONFIG without it. */
  appSecret?: string
  /** Accepted for the SDK's shape; not supported (start() needs appSecret). */
  clientAssertionProvider?: unknown
  /** `Domain.Feishu` (default), `Domain.Lark`, or a base URL (a path prefix is kept). */
  domain?: number | string
  /**
   * Sends endpoint discovery, as in the SDK: `request({method:'post', url:
   * '{domain}/callback/ws/endpoint', data, headers, timeout: 15000})`, answered with the
   * response body. Whatever it rewrites (the URL of a private deployment, timeout,
   * User-Agent, proxy agent) applies to discovery. The WebSocket itself is opened natively.
   */
  httpInstance?: CompatHttpInstance
  /**
   * A proxy agent. Its proxy URL is read where the common agent packages expose it
   * (https-proxy-agent, http-proxy-agent, socks-proxy-agent, proxy-agent); any other agent
   * never throws: the connection then uses the environment's proxy (HTTPS_PROXY,
   * HTTP_PROXY, ALL_PROXY, NO_PROXY), as such agents do, and a debug line says so.
   */
  agent?: any
  /** A proxy URL, used instead of `agent`; `null` connects directly. */
  proxy?: string | null
  /** Filters compat's own lines and the transport's, as the SDK's does (default info). */
  loggerLevel?: number
  logger?: CompatLogger
  /** `false`: no reconnects; the first failure or disconnect ends the client (onError). */
  autoReconnect?: boolean
  /** Appended to the User-Agent as `source/<source>`. */
  source?: string
  /** Accepted for the SDK's shape; not used. */
  extraUaTags?: string[]
  /** Bounds the WebSocket handshake (the transport's default, 15 s, when unset). */
  handshakeTimeoutMs?: number
  /** `pingTimeout` (seconds): silence after a ping before the socket is presumed dead. */
  wsConfig?: { pingTimeout?: number }
  /** The first successful connection of a start(). */
  onReady?(): void
  /**
   * Every failure, as an Error with `code` (the transport's error code) and `cause`:
   * - while retrying, each failed attempt or lost connection: "WebSocket error, retrying
   *   in N ms (attempt K): CODE: …" (never matches the terminal forms below);
   * - when the client stops for good: "WebSocket reconnect exhausted after N attempt(s):
   *   stopped: <why> (CODE: …)", e.g. wrong credentials (AUTH_FAILED), or, with
   *   `autoReconnect: false`, "WebSocket connect failed and autoReconnect is disabled: …".
   *   These match /^WebSocket reconnect exhausted after \d+ attempts?/ (and the SDK's
   *   autoReconnect text), so supervisors that recreate the client on them keep working.
   */
  onError?(error: Error): void
  /** Once per lost connection (not per retry). */
  onReconnecting?(): void
  onReconnected?(): void
}

export interface EventDispatcherLike {
  invoke(data: unknown, params?: { needCheck?: boolean }): unknown | Promise<unknown>
}

export declare class WSClient {
  /** Never throws for an agent; a proxy or domain that cannot work is refused at start(). */
  constructor(params: WSClientParams)
  /**
   * Arms dispatching and resolves at once, like the SDK's: the connection runs in the
   * background and reports through the callbacks. A call while running does nothing; a
   * call after close() starts again.
   *
   * Rejects (INVALID_CONFIG) only for options that can never work: no appSecret, a
   * malformed appId, domain or proxy.
   *
   * Recreated clients back off: when the last client of the same app (same app id,
   * secret and domain) in this process gave up before it ever connected, the new
   * client waits 1 s, 2 s, 4 s … up to 30 s before its first attempt (a connection, or
   * ten minutes without such a failure, resets it). A supervisor that recreates the
   * client on every terminal onError and resets its own backoff whenever start()
   * resolves (OpenClaw's) thus cannot send wrong credentials to Feishu once a second.
   */
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
  /** The transport of the current start(), null before: `status()`, `dropConnection()`. */
  readonly transport: FeishuTransport | null
  /** `{ appId, domain, proxy, state }`: no secret, a proxy URL without credentials. */
  toJSON(): { appId: string; domain: string | undefined; proxy: string | null | undefined; state: string }
}
