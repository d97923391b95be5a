'use strict'
// feishu-transport/compat: a WSClient with the constructor, callbacks and methods of
// @larksuiteoapi/node-sdk's, backed by FeishuTransport. It takes every option the SDK's
// takes and keeps what callers depend on (compat.d.ts says where it differs and why):
//
// - start() resolves once dispatching is armed; the connection runs in the background.
// - onError gets every failure: recoverable ones (the transport retries by itself) with a
//   message that starts "WebSocket error, retrying in", and the final one with a
//   message that matches /^WebSocket reconnect exhausted after \d+ attempts?/ (or the
//   SDK's "WebSocket connect failed and autoReconnect is disabled"), so a supervisor that
//   recreates the client on those, as OpenClaw's does, keeps working.
// - A client whose credentials were just rejected does not hammer Feishu when a
//   supervisor recreates it at once: see holdOff().
// - `httpInstance` sends endpoint discovery (the transport's `discover` hook), so its URL
//   rewriting, timeout, User-Agent and proxy agent apply as they do for the SDK.
// - An `agent` whose proxy cannot be read falls back to the environment's proxy.
// - close() is synchronous and silent; start() after close() starts again.

const crypto = require('node:crypto')
const fs = require('node:fs')
const util = require('node:util')
const { FeishuTransport, FeishuTransportError } = require('./index.js')

/** The SDK's Domain enum: `Feishu = 0`, `Lark = 1`. */
const Domain = Object.freeze({ Feishu: 0, Lark: 1, 0: 'Feishu', 1: 'Lark' })

/** The SDK's LoggerLevel enum. */
const LoggerLevel = Object.freeze({ fatal: 0, error: 1, warn: 2, info: 3, debug: 4, trace: 5 })

/** The SDK's discovery timeout, which wins over an httpInstance's own default. */
const SDK_DISCOVERY_TIMEOUT_MS = 15_000

/** Hold-off between recreated clients whose credentials keep failing (see holdOff()). */
const HOLD_OFF_INITIAL_MS = 1_000
const HOLD_OFF_MAX_MS = 30_000
/** A failure older than this no longer counts: the next client tries at once. */
const HOLD_OFF_FORGET_MS = 10 * 60_000

/** The transport's domain option for the SDK's `domain` (enum value or base URL). */
function toDomain(domain) {
  if (domain === undefined || domain === null || domain === Domain.Feishu) return 'feishu'
  if (domain === Domain.Lark) return 'lark'
  if (typeof domain === 'string') return domain
  return undefined
}

/** The native log level for the SDK's loggerLevel (the SDK's default is info). */
function toLogLevel(level) {
  if (typeof level !== 'number') return 'info'
  if (level <= LoggerLevel.error) return 'error'
  if (level === LoggerLevel.warn) return 'warn'
  if (level === LoggerLevel.info) return 'info'
  return 'debug'
}

/**
 * The proxy URL of an agent, read from the shapes the common agent packages have:
 * https-proxy-agent and http-proxy-agent (`agent.proxy`: a URL, or v5's parsed options),
 * socks-proxy-agent (`agent.proxy`: `{host, port, type, userId, password}`), proxy-agent
 * (`agent.getProxyForUrl(url)`, when it answers synchronously). `undefined` when none of
 * them fits: the caller then uses the environment's proxy.
 */
function proxyFromAgent(agent) {
  if (agent === undefined || agent === null) return undefined
  try {
    const p = agent.proxy
    if (typeof p === 'string' && p.trim() !== '') return p
    if (p && typeof p === 'object') {
      if (typeof p.href === 'string' && p.href !== '') return p.href
      if (typeof p.host === 'string' && p.type === 5) {
        const auth = p.userId ? `${encodeURIComponent(p.userId)}${p.password ? `:${encodeURIComponent(p.password)}` : ''}@` : ''
        // socks-proxy-agent resolves names itself only for socks5:// (shouldLookup).
        return `${agent.shouldLookup === true ? 'socks5' : 'socks5h'}://${auth}${p.host}:${p.port || 1080}`
      }
      const host = p.hostname || p.host
      if (typeof host === 'string' && typeof p.protocol === 'string' && /^https?:$/.test(p.protocol)) {
        const auth = typeof p.auth === 'string' && p.auth ? `${p.auth}@` : ''
        return `${p.protocol}//${auth}${host}${p.port ? `:${p.port}` : ''}`
      }
    }
    if (typeof agent.getProxyForUrl === 'function') {
      const r = agent.getProxyForUrl('https://open.feishu.cn/callback/ws/endpoint')
      if (typeof r === 'string' && r.trim() !== '') return r
      if (r && typeof r.then === 'function') r.then(undefined, () => {})
    }
  } catch {
    // A getter or function of a foreign agent threw: treat it as unreadable.
  }
  return undefined
}

/** A proxy URL fit to print: credentials replaced, and nothing quoted that does not parse. */
function redactProxy(proxy) {
  if (proxy === undefined || proxy === null) return proxy
  try {
    const u = new URL(proxy)
    if (u.username || u.password) {
      u.username = '[redacted]'
      u.password = ''
    }
    return u.href.replace('%5Bredacted%5D', '[redacted]')
  } catch {
    return '[redacted]'
  }
}

/** Extra CAs from NODE_EXTRA_CA_CERTS, which Node's own TLS (and so the SDK's) trusts. */
function extraCaPem() {
  const file = process.env.NODE_EXTRA_CA_CERTS
  if (!file) return undefined
  try {
    const pem = fs.readFileSync(file, 'utf8')
    // Node only warns about an unusable file; so does this: it is not passed on.
    return pem.includes('-----BEGIN CERTIFICATE-----') ? pem : undefined
  } catch {
    return undefined
  }
}

/**
 * Consecutive start failures per app, across the clients of this process. A supervisor
 * that recreates a client as soon as it reports a terminal error, and resets its own
 * backoff whenever start() resolves (OpenClaw's does both), would otherwise send a wrong
 * secret to Feishu once a second for ever. A new client of an app whose last client gave
 * up before connecting waits 1 s, 2 s, 4 s … up to 30 s before its first attempt; a
 * connection, or a failure older than ten minutes, resets it. Keyed by a hash, so the
 * secret is not kept here in clear.
 */
const failures = new Map()

function appKey(appId, appSecret, domain) {
  return crypto.createHash('sha256').update(`${appId}\0${appSecret}\0${domain}`).digest('hex')
}

function holdOff(key, now = Date.now()) {
  const f = failures.get(key)
  if (!f || now - f.at > HOLD_OFF_FORGET_MS) return 0
  return Math.min(HOLD_OFF_INITIAL_MS * 2 ** (f.count - 1), HOLD_OFF_MAX_MS)
}

/** Why a terminal failure ended the client, in words, for the onError message. */
function stopReason(err) {
  switch (err && err.code) {
    case 'AUTH_FAILED':
      return 'stopped: Feishu rejected the app credentials, and retrying cannot fix that'
    case 'FORBIDDEN':
      return 'stopped: Feishu refused this app, and retrying cannot fix that'
    case 'INVALID_CONFIG':
      return 'stopped: the configuration cannot work, and retrying cannot fix that'
    case 'RECONNECT_EXHAUSTED':
      return 'stopped after the configured number of attempts'
    default:
      return 'stopped: retrying cannot fix this'
  }
}

function describe(err) {
  return err instanceof FeishuTransportError ? `${err.code}: ${err.message}` : String((err && err.message) || err)
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
  #level
  #logger
  #proxy
  #proxySource
  #domain
  /** The current run: `{ transport, timer, everConnected, recovering, failed, closed }`. */
  #run = null
  /** The last run's state after it ended, for getConnectionStatus(). */
  #lastFailed = false

  constructor(params = {}) {
    if (params === null || typeof params !== 'object') throw new TypeError('feishu-transport/compat: params must be an object')
    this.#params = params
    this.#logger = params.logger || consoleLogger
    this.#level = typeof params.loggerLevel === 'number' ? params.loggerLevel : LoggerLevel.info
    this.#domain = toDomain(params.domain)
    if (params.proxy !== undefined) {
      this.#proxy = params.proxy
      this.#proxySource = 'option'
    } else if (params.agent !== undefined && params.agent !== null) {
      this.#proxy = proxyFromAgent(params.agent)
      this.#proxySource = this.#proxy === undefined ? 'env' : 'agent'
      if (this.#proxy === undefined) {
        this.#log(
          'debug',
          "the agent's proxy could not be read; the connection uses the environment's proxy (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY)",
        )
      }
    }
  }

  /** Writes one of compat's own lines, filtered by loggerLevel as the SDK filters. */
  #log(level, message) {
    if (LoggerLevel[level] > this.#level) return
    const logger = this.#logger
    const fn = logger[level] || logger.info
    try {
      if (typeof fn === 'function') fn.call(logger, '[ws]', message)
    } catch {
      // A throwing logger must not take the client down.
    }
  }

  #safe(name, ...args) {
    const fn = this.#params[name]
    if (typeof fn !== 'function') return
    const report = (e) => this.#log('error', `${name} callback threw: ${e && e.message}`)
    try {
      const r = fn(...args)
      if (r && typeof r.then === 'function') r.then(undefined, report)
    } catch (e) {
      report(e)
    }
  }

  /** Endpoint discovery through the caller's httpInstance, as the SDK sends it. */
  #discoverThrough(httpInstance) {
    return async (request) => {
      // `request.url` is the SDK's own (`https://open.feishu.cn/callback/ws/endpoint` for
      // Domain.Feishu), so the instance's rewriting of it (a private deployment) applies.
      const answer = await httpInstance.request({
        method: 'post',
        url: request.url,
        data: JSON.parse(request.body),
        headers: { locale: request.headers.locale, 'User-Agent': request.headers['User-Agent'] },
        timeout: SDK_DISCOVERY_TIMEOUT_MS,
      })
      // The SDK's default instance answers the body; an instance that answers the whole
      // response (axios without the SDK's interceptor) has it under `data`.
      return answer && typeof answer === 'object' && !('code' in answer) && answer.data && typeof answer.data === 'object' ? answer.data : answer
    }
  }

  #transportOptions(eventDispatcher, run) {
    const p = this.#params
    const options = {
      appId: p.appId,
      appSecret: p.appSecret,
      domain: this.#domain,
      logLevel: toLogLevel(this.#level),
      logger: (level, message) => this.#log(level, message),
      userAgent: p.source ? `source/${String(p.source).replace(/[^a-zA-Z0-9._-]/g, '').slice(0, 64)}` : undefined,
      reconnect: p.autoReconnect === false ? false : undefined,
      timeouts: { discoveryMs: SDK_DISCOVERY_TIMEOUT_MS },
      onEvent: (event) => eventDispatcher.invoke(event.payload, { needCheck: false }),
      onReady: () => {
        run.everConnected = true
        failures.delete(run.key)
        this.#safe('onReady')
      },
      onReconnecting: (info) => {
        if (info && info.error) {
          const e = new Error(`WebSocket error, retrying in ${info.delayMs} ms (attempt ${info.attempt}): ${describe(info.error)}`)
          e.code = info.error.code
          e.cause = info.error
          this.#safe('onError', e)
        }
        // The SDK reports one "reconnecting" per lost connection, not one per retry.
        if (run.everConnected && !run.recovering) {
          run.recovering = true
          this.#safe('onReconnecting')
        }
      },
      onReconnected: () => {
        run.recovering = false
        this.#safe('onReconnected')
      },
    }
    if (this.#proxySource === 'option' || this.#proxySource === 'agent') options.proxy = this.#proxy
    if (typeof p.handshakeTimeoutMs === 'number' && p.handshakeTimeoutMs > 0) options.timeouts.handshakeMs = p.handshakeTimeoutMs
    const pingTimeout = p.wsConfig && p.wsConfig.pingTimeout
    if (typeof pingTimeout === 'number' && pingTimeout > 0) options.timeouts.pongMs = pingTimeout * 1000
    const caPem = extraCaPem()
    if (caPem) options.tls = { caPem }
    if (p.httpInstance && typeof p.httpInstance.request === 'function') options.discover = this.#discoverThrough(p.httpInstance)
    return options
  }

  /**
   * Arms dispatching and resolves: events go to `eventDispatcher.invoke(data,
   * {needCheck:false})`, whose result is the ack. The connection runs in the background.
   * Rejects only for options that can never work (no appSecret, a malformed appId or
   * proxy); a call while running does nothing.
   */
  async start(params = {}) {
    const eventDispatcher = params && params.eventDispatcher
    if (!eventDispatcher || typeof eventDispatcher.invoke !== 'function') {
      throw new TypeError('feishu-transport/compat: start() needs { eventDispatcher } with an invoke() method')
    }
    if (this.#run && !this.#run.closed) return
    const p = this.#params
    if (typeof p.appSecret !== 'string' || p.appSecret === '') {
      throw new FeishuTransportError(
        'INVALID_CONFIG',
        p.clientAssertionProvider
          ? 'appSecret is required: feishu-transport does not support clientAssertionProvider'
          : 'appSecret is required',
        { terminal: true },
      )
    }
    if (this.#domain === undefined) {
      throw new FeishuTransportError('INVALID_CONFIG', 'domain must be Domain.Feishu, Domain.Lark or a base URL', { terminal: true })
    }
    const run = { transport: null, timer: null, holdUntil: 0, everConnected: false, recovering: false, failed: false, closed: false }
    run.key = appKey(p.appId, p.appSecret, this.#domain)
    // Throws INVALID_CONFIG for options that can never work: start() rejects with it.
    const transport = new FeishuTransport(this.#transportOptions(eventDispatcher, run))
    run.transport = transport
    this.#run = run
    this.#lastFailed = false
    const wait = holdOff(run.key)
    if (wait > 0) {
      run.holdUntil = Date.now() + wait
      this.#log('info', `the last client of this app gave up before connecting; waiting ${wait} ms before the first attempt`)
      run.timer = setTimeout(() => {
        run.timer = null
        this.#launch(run)
      }, wait)
    } else {
      this.#launch(run)
    }
  }

  #launch(run) {
    const transport = run.transport
    transport.start().then(
      () => {},
      (err) => {
        if (run.closed) return
        run.failed = true
        if (this.#run === run) this.#lastFailed = true
        if (!run.everConnected) {
          const f = failures.get(run.key)
          failures.set(run.key, { count: f && Date.now() - f.at <= HOLD_OFF_FORGET_MS ? f.count + 1 : 1, at: Date.now() })
        }
        const e = new Error(this.#terminalMessage(err, transport))
        e.code = err && err.code
        e.cause = err
        this.#safe('onError', e)
      },
    )
  }

  #terminalMessage(err, transport) {
    if (this.#params.autoReconnect === false) {
      return `WebSocket connect failed and autoReconnect is disabled: ${describe(err)}`
    }
    const attempts = transport.status().attempt + 1
    return `WebSocket reconnect exhausted after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${stopReason(err)} (${describe(err)})`
  }

  /** Stops for good, silently (no onError), like the SDK. `force` drops without waiting for handlers. */
  close(params = {}) {
    const run = this.#run
    const force = Boolean(params && params.force)
    if (run && !run.closed) {
      run.closed = true
      if (run.timer) clearTimeout(run.timer)
      run.timer = null
      run.transport.close({ force }).catch(() => {})
    }
    this.#log('info', `ws client closed manually${force ? ' (force)' : ''}`)
  }

  /** `{ lastConnectTime, nextConnectTime }` in ms since the epoch (0 when unknown), like the SDK. */
  getReconnectInfo() {
    const s = this.#status()
    return {
      lastConnectTime: (s && s.lastConnectedAt) || 0,
      nextConnectTime: (s && s.nextRetryAt) || (this.#run && this.#run.timer ? this.#run.holdUntil : 0),
    }
  }

  #status() {
    return this.#run ? this.#run.transport.status() : null
  }

  /** The SDK's status snapshot: `{ state, lastConnectTime?, nextConnectTime?, reconnectAttempts }`. */
  getConnectionStatus() {
    const run = this.#run
    const s = this.#status()
    let state = 'idle'
    if (this.#lastFailed) state = 'failed'
    else if (run && !run.closed && run.timer) state = 'connecting'
    else if (s && !run.closed) {
      if (s.state === 'connecting' || s.state === 'connected' || s.state === 'reconnecting') state = s.state
      else if (s.state === 'failed') state = 'failed'
    }
    const info = this.getReconnectInfo()
    return {
      state,
      lastConnectTime: info.lastConnectTime || undefined,
      nextConnectTime: info.nextConnectTime || undefined,
      reconnectAttempts: s ? s.attempt : 0,
    }
  }

  /** The underlying transport of the current run (null before start()): `status()`, `dropConnection()`. */
  get transport() {
    return this.#run ? this.#run.transport : null
  }

  /** What JSON.stringify shows: no secret, and a proxy URL without its credentials. */
  toJSON() {
    return {
      appId: this.#params.appId,
      domain: this.#domain,
      proxy: redactProxy(this.#proxy),
      state: this.getConnectionStatus().state,
    }
  }

  [util.inspect.custom](depth, options, inspect) {
    return `WSClient ${inspect(this.toJSON(), options)}`
  }
}

module.exports = { WSClient, Domain, LoggerLevel }
