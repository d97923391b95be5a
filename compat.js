'use strict'
// feishu-transport/compat: a WSClient with the constructor, callbacks and methods that
// OpenClaw uses from @larksuiteoapi/node-sdk, backed by FeishuTransport. The swap in an
// existing code base is `WSClient: Lark.WSClient` → `WSClient: compat.WSClient`.
//
// SDK parity where callers depend on it: start() resolves once dispatching is armed;
// onError fires only when the client has given up, with a message that matches
// /^WebSocket reconnect exhausted after \d+ attempts?/ (so OpenClaw's supervisor
// recreates the client); close() is synchronous and silent. What cannot cross into Rust
// (a JS `agent`) is mapped to a proxy URL when it can be read, and refused otherwise.

const { FeishuTransport, FeishuTransportError } = require('./index.js')

/** The SDK's Domain enum: `Feishu = 0`, `Lark = 1`. */
const Domain = Object.freeze({ Feishu: 0, Lark: 1, 0: 'Feishu', 1: 'Lark' })

/** The SDK's LoggerLevel enum. */
const LoggerLevel = Object.freeze({ fatal: 0, error: 1, warn: 2, info: 3, debug: 4, trace: 5 })

function toDomain(domain) {
  if (domain === undefined || domain === Domain.Feishu) return 'feishu'
  if (domain === Domain.Lark) return 'lark'
  if (typeof domain === 'string') return domain
  throw new TypeError(`feishu-transport/compat: domain must be Domain.Feishu, Domain.Lark or a base URL, got ${String(domain)}`)
}

function toLogLevel(level) {
  if (level === undefined) return 'info'
  if (level <= LoggerLevel.error) return 'error'
  if (level === LoggerLevel.warn) return 'warn'
  if (level === LoggerLevel.info) return 'info'
  return 'debug'
}

/**
 * Reads the proxy URL out of the agents Node code passes for proxies (https-proxy-agent,
 * http-proxy-agent: `agent.proxy` is a URL; socks-proxy-agent: `agent.proxy` is
 * `{host, port, type, userId, password}`). Any other agent is refused: silently ignoring
 * it would connect directly where the caller asked for a proxy.
 */
function proxyFromAgent(agent) {
  if (agent === undefined || agent === null) return undefined
  const p = agent.proxy
  if (p && typeof p.href === 'string') return p.href
  if (typeof p === 'string') return p
  if (p && typeof p.host === 'string' && (p.type === 5 || p.type === 4)) {
    const auth = p.userId ? `${encodeURIComponent(p.userId)}${p.password ? `:${encodeURIComponent(p.password)}` : ''}@` : ''
    return `socks5h://${auth}${p.host}:${p.port || 1080}`
  }
  throw new TypeError(
    'feishu-transport/compat: the `agent` option cannot be used natively and its proxy could not be read; ' +
      "pass `proxy: 'http://host:port'` (or socks5://) instead, or set HTTPS_PROXY",
  )
}

const consoleLogger = {
  error: (...m) => console.error(...m),
  warn: (...m) => console.warn(...m),
  info: (...m) => console.info(...m),
  debug: (...m) => console.debug(...m),
  trace: (...m) => console.debug(...m),
}

class WSClient {
  #params
  #transport = null
  #running = null
  #everConnected = false
  #recovering = false
  #failed = false
  #closed = false

  constructor(params = {}) {
    if (params === null || typeof params !== 'object') throw new TypeError('feishu-transport/compat: params must be an object')
    this.#params = params
    // Fail fast on what can never work, as a TypeError like the SDK's assertions.
    toDomain(params.domain)
    this.proxy = params.proxy !== undefined ? params.proxy : proxyFromAgent(params.agent)
    const logger = params.logger || consoleLogger
    this.logLevel = toLogLevel(params.loggerLevel)
    this.log = (level, message) => {
      const fn = logger[level] || logger.info
      if (typeof fn === 'function') fn.call(logger, '[ws]', message)
    }
    if (params.httpInstance !== undefined) {
      // Discovery runs in Rust; an axios-style instance cannot be used there. Said once,
      // loudly, rather than ignored.
      this.log(
        'warn',
        'httpInstance is not used by feishu-transport: endpoint discovery runs natively with its own timeout, ' +
          'User-Agent and proxy settings; pass a private deployment as `domain`',
      )
    }
  }

  /** Arms dispatching: events go to `eventDispatcher.invoke(data, {needCheck:false})`. Resolves at once, like the SDK. */
  async start(params = {}) {
    const eventDispatcher = params && params.eventDispatcher
    if (!eventDispatcher || typeof eventDispatcher.invoke !== 'function') {
      throw new TypeError('feishu-transport/compat: start() needs { eventDispatcher } with an invoke() method')
    }
    if (this.#running) return
    const p = this.#params
    this.#closed = false
    this.#failed = false
    const options = {
      appId: p.appId,
      appSecret: p.appSecret,
      domain: toDomain(p.domain),
      logLevel: this.logLevel,
      logger: this.log,
      userAgent: p.source ? `source/${String(p.source).replace(/[^a-zA-Z0-9._-]/g, '').slice(0, 64)}` : undefined,
      reconnect: p.autoReconnect === false ? false : undefined,
      timeouts: {},
      onEvent: (event) => eventDispatcher.invoke(event.payload, { needCheck: false }),
      onReady: () => {
        this.#everConnected = true
        this.#safe('onReady')
      },
      onReconnecting: () => {
        // The SDK reports one "reconnecting" per lost connection, not one per retry.
        if (this.#everConnected && !this.#recovering) {
          this.#recovering = true
          this.#safe('onReconnecting')
        }
      },
      onReconnected: () => {
        this.#recovering = false
        this.#safe('onReconnected')
      },
    }
    if (this.proxy !== undefined) options.proxy = this.proxy
    if (typeof p.handshakeTimeoutMs === 'number' && p.handshakeTimeoutMs > 0) options.timeouts.handshakeMs = p.handshakeTimeoutMs
    const pingTimeout = p.wsConfig && p.wsConfig.pingTimeout
    if (typeof pingTimeout === 'number' && pingTimeout > 0) options.timeouts.pongMs = pingTimeout * 1000
    const transport = new FeishuTransport(options)
    this.#transport = transport
    this.#running = transport.start().then(
      () => {
        this.#running = null
      },
      (err) => {
        this.#running = null
        if (this.#closed) return
        this.#failed = true
        const attempts = Math.max(1, transport.status().attempt)
        const reason = err instanceof FeishuTransportError ? `${err.code}: ${err.message}` : String(err)
        const e = new Error(`WebSocket reconnect exhausted after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${reason}`)
        e.cause = err
        this.#safe('onError', e)
      },
    )
  }

  #safe(name, ...args) {
    const fn = this.#params[name]
    if (typeof fn !== 'function') return
    try {
      const r = fn(...args)
      if (r && typeof r.then === 'function') r.then(undefined, (e) => this.log('error', `${name} callback threw: ${e && e.message}`))
    } catch (e) {
      this.log('error', `${name} callback threw: ${e && e.message}`)
    }
  }

  /** Stops for good, silently (no onError), like the SDK. `force` drops without waiting for handlers. */
  close(params = {}) {
    this.#closed = true
    const t = this.#transport
    if (t) t.close({ force: Boolean(params && params.force) }).catch(() => {})
    this.log('info', `ws client closed manually${params && params.force ? ' (force)' : ''}`)
  }

  /** `{ lastConnectTime, nextConnectTime }` in ms since the epoch (0 when unknown), like the SDK. */
  getReconnectInfo() {
    const s = this.#transport ? this.#transport.status() : null
    return {
      lastConnectTime: (s && s.lastConnectedAt) || 0,
      nextConnectTime: (s && s.nextRetryAt) || 0,
    }
  }

  /** The SDK's status snapshot: `{ state, lastConnectTime?, nextConnectTime?, reconnectAttempts }`. */
  getConnectionStatus() {
    const s = this.#transport ? this.#transport.status() : null
    let state = 'idle'
    if (this.#failed) state = 'failed'
    else if (s) {
      if (s.state === 'connecting' || s.state === 'connected' || s.state === 'reconnecting') state = s.state
      else if (s.state === 'failed') state = 'failed'
    }
    return {
      state,
      lastConnectTime: (s && s.lastConnectedAt) || undefined,
      nextConnectTime: (s && s.nextRetryAt) || undefined,
      reconnectAttempts: s ? s.attempt : 0,
    }
  }

  /** The underlying transport (null before start()), for status() and dropConnection(). */
  get transport() {
    return this.#transport
  }
}

module.exports = { WSClient, Domain, LoggerLevel }
