// Public types of feishu-transport: this file is the contract of the public API; a change
// to the shapes below is a breaking change and is recorded in CHANGELOG.md.

/** Severity of a log line. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

/** Every code a {@link FeishuTransportError} can carry. */
export type FeishuTransportErrorCode =
  | 'INVALID_CONFIG'
  | 'AUTH_FAILED'
  | 'FORBIDDEN'
  | 'CONNECTION_LIMIT'
  | 'DISCOVERY_FAILED'
  | 'DISCOVERY_TIMEOUT'
  | 'HANDSHAKE_FAILED'
  | 'HANDSHAKE_TIMEOUT'
  | 'PONG_TIMEOUT'
  | 'PROXY_ERROR'
  | 'TLS_ERROR'
  | 'DISCONNECTED'
  | 'PROTOCOL_ERROR'
  | 'RECONNECT_EXHAUSTED'
  | 'ALREADY_STARTED'
  /** A bug in the transport itself (terminal): start() still settles, with this code. */
  | 'INTERNAL'

/**
 * Backoff between reconnect attempts: `min(maxDelayMs, initialDelayMs · multiplier^(attempt−1))`, ±`jitter`.
 * Whatever these say, attempts are paced at most four a second after a burst of two (a
 * floor no option lowers), so zero delays cannot flood a failing server.
 */
export interface ReconnectOptions {
  /** Delay before the first retry (0 – 2147483647 ms). Default 1000. */
  initialDelayMs?: number
  /** Upper bound of any delay. Default 60000. */
  maxDelayMs?: number
  /** Growth per consecutive failure. Default 2. */
  multiplier?: number
  /** Random spread, a fraction of the delay (0..1). Default 0.2. */
  jitter?: number
  /** Consecutive failures after which start() rejects with RECONNECT_EXHAUSTED. Default: unlimited. */
  maxAttempts?: number
}

export interface TimeoutOptions {
  /** Endpoint discovery, the whole request. Default 15000. */
  discoveryMs?: number
  /** TCP + TLS + WebSocket upgrade. Default 15000. */
  handshakeMs?: number
  /** Silence after a ping before the socket is presumed dead (PONG_TIMEOUT). Default 10000. */
  pongMs?: number
  /** The WebSocket close handshake on close(). Default 2000. */
  closeMs?: number
}

/**
 * Trust for `https`/`wss` (and `https://` proxies, and a `rediss://` `dedupe.store`). By
 * default the bundled Mozilla roots;
 * certificates are always verified and there is no option to turn that off. A
 * verification failure is a `TLS_ERROR` naming the host and the reason.
 */
export interface TlsOptions {
  /**
   * Extra CA certificates to trust, as PEM (a string or a Buffer; several certificates
   * may be concatenated): a company's private CA or a TLS-inspecting proxy's CA.
   */
  caPem?: string | Uint8Array
  /** Also trust the operating system's certificate store. Default false. */
  systemRoots?: boolean
}

export interface DedupeOptions {
  /** How long a handled event's result is remembered. Default 43200000 (12 h, past Feishu's re-push schedule). */
  ttlMs?: number
  /** At most this many remembered events (in this process's memory). Default 10000. */
  maxEntries?: number
  /**
   * Where claims and results are also kept, beyond this process's memory (README,
   * Reliability, has the semantics and the windows that can still handle twice):
   * - `'memory'` (default): this process only, forgotten on restart;
   * - `'sqlite:<path>'`: a SQLite file (created if missing, WAL), shared by the processes
   *   of one host and kept across restarts. Opened by the constructor: a file that is not
   *   a SQLite database, or whose `feishu_transport_dedupe_log` table has another
   *   shape, throws INVALID_CONFIG naming it; a file other processes hold locked is
   *   waited for up to 5 s first. Each process keeps where the file's live
   *   events are in memory (about 70 MB per million) and reads the whole file when the
   *   store opens (about 1 s per million rows);
   * - `'redis://[user:password@]host[:port][/db]'` or `'rediss://…'` (TLS, rustls): a
   *   Redis or Valkey server shared by every process and host of the bot. Connected on
   *   first use; an unreachable server never stops events (see `status().store`). The
   *   password is hidden in every log line and error. `rediss://` trusts what the
   *   transport's sockets trust (bundled roots, `tls.caPem`, `tls.systemRoots`) and always
   *   verifies the certificate (a URL ending in `#insecure` is INVALID_CONFIG); a
   *   certificate that does not verify counts as the store being unreachable.
   *
   * Keys are namespaced by appId and expire after `ttlMs` (a SQLite file is swept every
   * `ttlMs` / 12, between a minute and an hour); a claim lives `handlerTimeoutMs` + 5 s,
   * or, when the timeout is off, 5 min + 5 s renewed every third of that while the
   * handler runs. A store call (a Redis command or connection, a SQLite write waiting
   * on another process's lock) fails after 1 s, so an event's claim and result both fit
   * in Feishu's 3 s ack window. Any other string throws INVALID_CONFIG naming the accepted
   * forms.
   */
  store?: string
}

/** What the `discover` option receives: the discovery request the native path would send. */
export interface DiscoveryRequest {
  url: string
  method: 'POST'
  headers: Record<string, string>
  /** JSON text; holds the app secret. */
  body: string
  timeoutMs: number
}

/**
 * Checked when the transport is constructed and read once: an unknown key (at any level),
 * a wrong type, NaN, a negative or non-finite number, or a getter that throws is a
 * {@link FeishuTransportError} with code `INVALID_CONFIG`, naming the option.
 */
export interface FeishuTransportOptions {
  /** The app's id; must match `/^cli_[0-9a-fA-F]{16}$/`. A rejected one is described by length and shape, never shown. */
  appId: string
  /** The app's secret. Never logged, never in an error message. No control characters (a trailing newline is refused). */
  appSecret: string
  /** `'feishu'` (default), `'lark'`, or a base URL (`https://…`, or `http://127.0.0.1:…` for the emulator; the scheme in any case). Not empty. */
  domain?: 'feishu' | 'lark' | (string & {})
  /**
   * Handles one event. The returned value (or the value the returned promise resolves
   * to) is serialised to JSON and sent back to Feishu as the ack's `data` (a card reply,
   * say); `undefined`/`null` acks with a bare 200. A throw, a rejection or a result that
   * JSON cannot serialise acks 500, and Feishu re-delivers the event.
   */
  onEvent(event: FeishuEvent): unknown | Promise<unknown>
  /**
   * The first connection of this start() is up: once per start(), whichever of the
   * `connections` sockets that is (`connection`, its index). The others' first connects
   * show in `status().connections` and onStatus.
   */
  onReady?(info: { connection: number }): void
  /** Connection `connection` (an index, 0 with one connection) schedules a retry. */
  onReconnecting?(info: { connection: number; attempt: number; delayMs: number; error: FeishuTransportError | null }): void
  /** Connection `connection` is up again after a failure. */
  onReconnected?(info: { connection: number }): void
  /** Every failure, recoverable or terminal. */
  onError?(error: FeishuTransportError): void
  /** Every state transition. */
  onStatus?(status: TransportStatus): void
  /** Where log lines go (single-line, redacted, ≤ 500 characters). Default: the console. */
  logger?(level: LogLevel, message: string): void
  /** Lines below this level are not produced at all. Default 'info'. */
  logLevel?: LogLevel | 'silent'
  /** Appended to `feishu-transport/<version>` in the discovery User-Agent: at most 512 printable ASCII characters. */
  userAgent?: string
  /**
   * The proxy of every connection, discovery and the WebSocket alike:
   * - `'http://host:port'` or `'https://host:port'` (HTTP CONNECT; `https` is TLS to the
   *   proxy itself), `'socks5://host:port'` (the target is resolved here) or
   *   `'socks5h://host:port'` (the proxy resolves it), each with optional
   *   `user:password@` (percent-encoded). `NO_PROXY` does not apply to an explicit proxy.
   * - `undefined` (default): the environment, read when the transport is constructed:
   *   `HTTPS_PROXY` for `https`/`wss` targets, `HTTP_PROXY` for `http`/`ws` ones, else
   *   `ALL_PROXY`; lower case wins over upper case; `NO_PROXY` lists hosts to reach
   *   directly (`*`, `example.com` and its subdomains, `.example.com`, IPs, CIDR blocks,
   *   each with an optional `:port`).
   * - `null`: always direct, whatever the environment says.
   *
   * A proxy that refuses, wants credentials, answers garbage or stays silent fails the
   * attempt with `PROXY_ERROR` (naming the proxy, never its password) within
   * `timeouts.handshakeMs`, and is retried like any recoverable error.
   */
  proxy?: string | null
  /**
   * Advanced: sends endpoint discovery through your own HTTP stack instead of the native
   * client, once per connect attempt. It receives exactly the request the native path
   * would send: `url` (`{domain}/callback/ws/endpoint`), `method` (`'POST'`), `headers`
   * (Content-Type, User-Agent, locale), `body` (the JSON text `{"AppID":…,"AppSecret":…}`:
   * it holds the secret, never log it) and `timeoutMs` (`timeouts.discoveryMs`). It must
   * resolve to the discovery response's JSON body, `{ code, msg, data: { URL,
   * ClientConfig } }`, as an object or its text, and reject for a transport failure or a
   * non-2xx answer.
   *
   * The answer is classified as on the native path (wrong credentials are AUTH_FAILED,
   * and so on), `timeoutMs` is enforced around the call, and a plain `ws://` socket URL
   * is still accepted only for an `http://` `domain`. A throw, a rejection or a
   * non-JSON answer is DISCOVERY_FAILED (recoverable; the message is the rejection's,
   * without the app secret). The WebSocket itself is always opened natively, with
   * `proxy` and `tls`. The compat `WSClient` uses this to honour an SDK `httpInstance`.
   */
  discover?(request: DiscoveryRequest): Promise<object | string>
  /** Which certificate authorities are trusted. Certificates are always verified. */
  tls?: TlsOptions
  /** `false`: no reconnects; start() settles at the first disconnect. Default: on, with the defaults of {@link ReconnectOptions}. */
  reconnect?: boolean | ReconnectOptions
  /** Overrides the server's PingInterval. */
  pingIntervalMs?: number
  timeouts?: TimeoutOptions
  /**
   * Handlers running at once; while all are busy the socket is not read (backpressure,
   * shown as `status().backpressure`). Default 256.
   */
  maxConcurrentHandlers?: number
  /**
   * How long a handler may run before the transport gives up on it. Past it the event is
   * acked 500 (Feishu re-delivers it), its handler slot and its dedupe claim are freed,
   * `counters.handlerTimeouts` grows, and the handler's late result is ignored (logged
   * once). `0` or `Infinity` waits for ever. Default 300000 (5 minutes).
   */
  handlerTimeoutMs?: number
  /** Re-deliveries of a successfully handled event are acked with the same result without calling onEvent. Default on. */
  dedupe?: false | DedupeOptions
  /**
   * Sockets held for this app at once, a whole number from 1 (the default) to 50
   * (Feishu's limit per app). Feishu delivers each event to one of an app's connections
   * at random, so with 2 or more a dropped socket never leaves the app deaf while it
   * reconnects. Each connection has its own discovery, liveness and backoff (and its own
   * `maxConcurrentHandlers`); they share onEvent, dedupe and status. Each event is acked
   * on the socket it came in on. A connection that gives up for good (a terminal error,
   * `maxAttempts`, `reconnect: false`) stops the whole transport with its error; one
   * refused with CONNECTION_LIMIT waits `maxDelayMs` and tries again while the others
   * keep running.
   */
  connections?: number
}

/** One event, as Feishu sent it. */
export interface FeishuEvent {
  /** The envelope exactly as Feishu sent it (`{schema, header, event}`, or v1 `{uuid, event, …}`). */
  payload: any
  /**
   * `header.event_type` when it is a string; otherwise (v1) `event.type` when `event` is
   * an object and `type` a string; otherwise null.
   */
  eventType: string | null
  /**
   * The key dedupe uses: `header.event_id` when the envelope has a `header` object (v2),
   * `uuid` when it has none (v1); a non-string or empty value is null (and such an event
   * is not deduplicated). The same rule as the transport's own, computed once in Rust.
   */
  eventId: string | null
  /** The frame's message_id. */
  messageId: string
  traceId: string | null
  /** When the last fragment arrived, ms since the epoch. */
  receivedAt: number
}

/** A failure of the transport: switch on `code`; `terminal` says whether retrying can help. */
export declare class FeishuTransportError extends Error {
  constructor(
    code: FeishuTransportErrorCode,
    message: string,
    options?: { terminal?: boolean; feishuCode?: number; cause?: unknown },
  )
  readonly name: 'FeishuTransportError'
  code: FeishuTransportErrorCode
  /** True when retrying cannot help (wrong credentials, forbidden, bad options). */
  terminal: boolean
  /** The platform's own code, where it sent one (discovery `code`, handshake status or autherrcode). */
  feishuCode?: number
  /** For RECONNECT_EXHAUSTED: the last error. */
  cause?: unknown
}

export type TransportState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'stopped' | 'failed'

/** One connection's part of {@link TransportStatus} (`status().connections[i]`). */
export interface ConnectionStatus {
  /** 0 to `connections` − 1. */
  index: number
  state: TransportState
  connected: boolean
  /** This connection's consecutive failed attempts; 0 once it proved healthy. */
  attempt: number
  /** The device_id of its live socket. */
  connectionId: string | null
  lastConnectedAt: number | null
  lastDisconnectedAt: number | null
  nextRetryAt: number | null
  lastError: { code: string; message: string; terminal: boolean } | null
  backpressure: boolean
}

/**
 * The whole transport. With several connections the top-level fields are derived from
 * `connections`: `state` is the most alive of theirs (`connected` if any is up, else
 * `reconnecting`, else `connecting`, else `failed`, else `stopped`), so `connected` is
 * true while any socket is up; `attempt` is the highest; `connectionId` the first live
 * one's; `lastConnectedAt`, `lastDisconnectedAt` and `lastError` the latest of any;
 * `nextRetryAt` the earliest; `backpressure` true when any is saturated. Counters are the
 * sum over all connections.
 */
export interface TransportStatus {
  state: TransportState
  connected: boolean
  /** Consecutive failed attempts in this run (the highest of any connection); 0 once a connection proved healthy. */
  attempt: number
  /** The device_id of the live socket (the first live one's). */
  connectionId: string | null
  lastConnectedAt: number | null
  lastDisconnectedAt: number | null
  lastEventAt: number | null
  lastPongAt: number | null
  nextRetryAt: number | null
  lastError: { code: string; message: string; terminal: boolean } | null
  /** The server's settings, in ms; reported only (the server's reconnectCount never stops the loop). */
  server: { pingIntervalMs: number; reconnectCount: number; reconnectIntervalMs: number; reconnectNonceMs: number } | null
  /**
   * Every handler slot (`maxConcurrentHandlers`) is busy, so the socket is not read until
   * one settles. Reported through onStatus when it turns on and off; false when no
   * socket is live.
   */
  backpressure: boolean
  counters: {
    connects: number
    events: number
    acks: number
    failedAcks: number
    duplicates: number
    reconnects: number
    droppedFrames: number
    /** Handlers given up on after `handlerTimeoutMs` (each acked 500). */
    handlerTimeouts: number
    /** Calls to the `dedupe.store` (SQLite or Redis) that failed; each such event was handled without it. */
    storeErrors: number
  }
  /** Each connection, by index (one entry with the default `connections: 1`). */
  connections: ConnectionStatus[]
  /**
   * The dedupe store: `kind` as `dedupe.store` names it (`'memory'`, `'sqlite'`,
   * `'redis'`); `healthy` is false from a failed store call until the next one works
   * (events are handled meanwhile, without cross-process dedupe). Always true for memory.
   */
  store: { kind: 'memory' | 'sqlite' | 'redis'; healthy: boolean }
}

/** Feishu's long connection, owned by Rust from discovery to reconnect. */
export declare class FeishuTransport {
  /** Validates the options (throws INVALID_CONFIG); connects nothing. */
  constructor(options: FeishuTransportOptions)
  /**
   * Connects and stays connected, reconnecting as needed. Settles only when the
   * transport stops: `{reason:'closed'}` after close(), `{reason:'aborted'}` after the
   * signal; rejects with a FeishuTransportError when it gives up (a terminal error,
   * `maxAttempts` reached, or any disconnect with `reconnect: false`). A second call while
   * running rejects with ALREADY_STARTED; after it settled it may be called again.
   */
  start(options?: { signal?: AbortSignal }): Promise<{ reason: 'closed' | 'aborted' }>
  /**
   * Stops: waits up to `drainMs` (default 5000) for in-flight handlers and sends their
   * acks, closes the socket, and resolves once start() has settled. `force` drops at once.
   * `drainMs` is 0 – 2147483647; anything else (NaN, Infinity, negative, an unknown key)
   * rejects with INVALID_CONFIG.
   */
  close(options?: { force?: boolean; drainMs?: number }): Promise<void>
  /**
   * Cuts the live socket without acking in-flight events (Feishu re-delivers them) and
   * reconnects: connection `options.connection` only, or every connection when it is left
   * out. A connection index outside 0 to `connections` − 1 throws INVALID_CONFIG.
   */
  dropConnection(reason?: string, options?: { connection?: number }): void
  status(): TransportStatus
}

/** The version of this package. */
export declare const version: string

export * from './emulator'
