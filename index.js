'use strict'
// The public entry of feishu-transport. Rust owns the connection lifecycle; this file
// only adapts it to JavaScript: it validates option types, turns native outcomes into
// FeishuTransportError, wires the AbortSignal, and fans lifecycle notes out to the
// caller's callbacks, none of which may ever throw back into the transport.

const { isNativeError } = require('node:util').types
const native = require('./native.js')

/**
 * Every code a FeishuTransportError can carry (index.d.ts `FeishuTransportErrorCode`); a
 * native error whose `code` is one of them becomes a FeishuTransportError.
 */
const CODES = [
  'INVALID_CONFIG', 'AUTH_FAILED', 'FORBIDDEN', 'CONNECTION_LIMIT', 'DISCOVERY_FAILED',
  'DISCOVERY_TIMEOUT', 'HANDSHAKE_FAILED', 'HANDSHAKE_TIMEOUT', 'PONG_TIMEOUT', 'PROXY_ERROR',
  'TLS_ERROR', 'DISCONNECTED', 'PROTOCOL_ERROR', 'RECONNECT_EXHAUSTED', 'ALREADY_STARTED',
  'INTERNAL',
]

class FeishuTransportError extends Error {
  constructor(code, message, options = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined)
    this.name = 'FeishuTransportError'
    this.code = code
    this.terminal = Boolean(options.terminal)
    if (typeof options.feishuCode === 'number') this.feishuCode = options.feishuCode
  }
}

function errorFromJson(e) {
  return new FeishuTransportError(e.code, e.message, {
    terminal: e.terminal,
    feishuCode: e.feishuCode ?? undefined,
    cause: e.cause ? errorFromJson(e.cause) : undefined,
  })
}

function invalid(message) {
  return new FeishuTransportError('INVALID_CONFIG', message, { terminal: true })
}

/**
 * The reason logged for a failed handler: an Error's own message, a thrown string as is,
 * anything else empty. Read without calling getters or toString, which could throw again.
 */
function failureReason(e) {
  try {
    if (isNativeError(e)) {
      const d = Object.getOwnPropertyDescriptor(e, 'message')
      return d && typeof d.value === 'string' ? d.value : 'JavaScript Error'
    }
    return typeof e === 'string' ? e : ''
  } catch {
    return ''
  }
}

const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent']

function defaultLogger(level, message) {
  const line = `[feishu-transport] ${level}: ${message}`
  if (level === 'error') console.error(line)
  else if (level === 'warn') console.warn(line)
  else console.log(line)
}

function optionalNumber(obj, key, path) {
  const v = obj[key]
  if (v === undefined) return undefined
  if (typeof v !== 'number' || Number.isNaN(v)) throw invalid(`${path} must be a number, got ${typeof v}`)
  return v
}

function optionalFunction(obj, key) {
  const v = obj[key]
  if (v !== undefined && typeof v !== 'function') throw invalid(`${key} must be a function, got ${typeof v}`)
  return v
}

/** Flattens the public options into the native ones, rejecting wrong types by name. */
function toNativeOptions(o) {
  if (o === null || typeof o !== 'object') throw invalid('options must be an object')
  for (const key of ['appId', 'appSecret']) {
    if (typeof o[key] !== 'string') throw invalid(`${key} must be a string, got ${typeof o[key]}`)
  }
  if (typeof o.onEvent !== 'function') throw invalid('onEvent must be a function')
  for (const key of ['onReady', 'onReconnecting', 'onReconnected', 'onError', 'onStatus', 'logger']) {
    optionalFunction(o, key)
  }
  if (o.domain !== undefined && typeof o.domain !== 'string') throw invalid('domain must be a string')
  if (o.userAgent !== undefined && typeof o.userAgent !== 'string') throw invalid('userAgent must be a string')
  if (o.logLevel !== undefined && !LOG_LEVELS.includes(o.logLevel)) {
    throw invalid(`logLevel must be one of ${LOG_LEVELS.join(', ')}`)
  }
  const n = { appId: o.appId, appSecret: o.appSecret, domain: o.domain, userAgent: o.userAgent }
  // Three states, which napi cannot tell apart by itself: undefined reads the
  // environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY), null connects directly.
  if (o.proxy === undefined) n.proxyMode = 'env'
  else if (o.proxy === null) n.proxyMode = 'none'
  else if (typeof o.proxy === 'string' && o.proxy.trim() !== '') {
    n.proxyMode = 'url'
    n.proxy = o.proxy
  } else {
    throw invalid('proxy must be a proxy URL (http://, https://, socks5:// or socks5h://), null (direct) or undefined (the environment)')
  }
  const tls = o.tls
  if (tls !== undefined) {
    if (tls === null || typeof tls !== 'object') throw invalid('tls must be an object')
    for (const key of Object.keys(tls)) {
      if (key === 'caPem' || key === 'systemRoots') continue
      if (key === 'rejectUnauthorized' || key === 'insecure') {
        throw invalid(`tls.${key} is not supported: certificates are always verified; trust a private CA with tls.caPem instead`)
      }
      throw invalid(`tls.${key} is not a known option (caPem, systemRoots)`)
    }
    const ca = tls.caPem
    if (typeof ca === 'string') n.tlsCaPem = ca
    else if (ca instanceof Uint8Array) n.tlsCaPem = Buffer.from(ca.buffer, ca.byteOffset, ca.byteLength).toString('utf8')
    else if (ca !== undefined) throw invalid('tls.caPem must be a PEM string or a Buffer')
    if (tls.systemRoots !== undefined && typeof tls.systemRoots !== 'boolean') {
      throw invalid('tls.systemRoots must be a boolean')
    }
    n.tlsSystemRoots = tls.systemRoots
  }
  n.logLevel = o.logLevel
  const r = o.reconnect
  if (r === false) n.reconnect = false
  else if (r !== undefined && r !== true) {
    if (r === null || typeof r !== 'object') throw invalid('reconnect must be a boolean or an object')
    n.reconnect = true
    n.initialDelayMs = optionalNumber(r, 'initialDelayMs', 'reconnect.initialDelayMs')
    n.maxDelayMs = optionalNumber(r, 'maxDelayMs', 'reconnect.maxDelayMs')
    n.multiplier = optionalNumber(r, 'multiplier', 'reconnect.multiplier')
    n.jitter = optionalNumber(r, 'jitter', 'reconnect.jitter')
    n.maxAttempts = optionalNumber(r, 'maxAttempts', 'reconnect.maxAttempts')
  }
  n.pingIntervalMs = optionalNumber(o, 'pingIntervalMs', 'pingIntervalMs')
  const t = o.timeouts
  if (t !== undefined) {
    if (t === null || typeof t !== 'object') throw invalid('timeouts must be an object')
    n.discoveryTimeoutMs = optionalNumber(t, 'discoveryMs', 'timeouts.discoveryMs')
    n.handshakeTimeoutMs = optionalNumber(t, 'handshakeMs', 'timeouts.handshakeMs')
    n.pongTimeoutMs = optionalNumber(t, 'pongMs', 'timeouts.pongMs')
    n.closeTimeoutMs = optionalNumber(t, 'closeMs', 'timeouts.closeMs')
  }
  n.maxConcurrentHandlers = optionalNumber(o, 'maxConcurrentHandlers', 'maxConcurrentHandlers')
  const h = optionalNumber(o, 'handlerTimeoutMs', 'handlerTimeoutMs')
  n.handlerTimeoutMs = h === Infinity ? 0 : h
  const d = o.dedupe
  if (d === false) n.dedupe = false
  else if (d !== undefined && d !== true) {
    if (d === null || typeof d !== 'object') throw invalid('dedupe must be false or an object')
    n.dedupeTtlMs = optionalNumber(d, 'ttlMs', 'dedupe.ttlMs')
    n.dedupeMaxEntries = optionalNumber(d, 'maxEntries', 'dedupe.maxEntries')
  }
  return n
}

/**
 * The `discover` option as the native side calls it: `(requestJson) => Promise<text>`.
 * The user's function gets `{ url, method, headers, body, timeoutMs }` and resolves to the
 * discovery response JSON (an object or its text). Whatever it throws or rejects with
 * reaches Rust as a message only, which Rust scrubs (DISCOVERY_FAILED, recoverable).
 */
function discoveryHook(discover) {
  if (discover === undefined) return undefined
  if (typeof discover !== 'function') throw invalid(`discover must be a function, got ${typeof discover}`)
  return (requestJson) =>
    Promise.resolve()
      .then(() => discover(JSON.parse(requestJson)))
      .then(
        (answer) => {
          if (typeof answer === 'string') return answer
          if (answer !== null && typeof answer === 'object') return JSON.stringify(answer)
          throw new Error(`discover() must resolve to the discovery response JSON (an object or its text), got ${answer === null ? 'null' : typeof answer}`)
        },
        (e) => {
          throw new Error(failureReason(e) || 'discover() rejected without a message')
        },
      )
}

function toTransportError(e) {
  if (e instanceof FeishuTransportError) return e
  if (e && CODES.includes(e.code)) {
    return new FeishuTransportError(e.code, e.message, { terminal: e.code === 'INVALID_CONFIG' })
  }
  return e
}

class FeishuTransport {
  #native
  #options
  #log

  /**
   * Validates the options; throws a FeishuTransportError with code INVALID_CONFIG when
   * they cannot work. Connects nothing until start().
   */
  constructor(options) {
    const nativeOptions = toNativeOptions(options)
    // Handed over beside the options, not in them: a function is not an option value.
    const discover = discoveryHook(options.discover)
    try {
      this.#native = new native.NativeTransport(nativeOptions, discover)
    } catch (e) {
      throw toTransportError(e)
    }
    this.#options = { ...options }
    const logger = options.logger ?? defaultLogger
    this.#log = (level, message) => {
      try {
        const r = logger(level, message)
        if (r && typeof r.then === 'function') r.then(undefined, () => {})
      } catch {
        // A throwing logger must not take the transport down; nothing better to tell.
      }
    }
  }

  /** Calls a user callback; a throw or a rejection is logged, never propagated. */
  #safe(name, fn, ...args) {
    if (typeof fn !== 'function') return
    const report = (e) => this.#log('warn', `${name} threw: ${e && e.message ? e.message : String(e)}`.replace(/\s+/g, ' '))
    try {
      const r = fn(...args)
      if (r && typeof r.then === 'function') r.then(undefined, report)
    } catch (e) {
      report(e)
    }
  }

  #onLifecycle = (kind, json) => {
    try {
      const data = JSON.parse(json)
      const o = this.#options
      switch (kind) {
        case 'log':
          this.#log(data.level, data.message)
          break
        case 'status':
          this.#safe('onStatus', o.onStatus, data)
          break
        case 'ready':
          this.#safe('onReady', o.onReady)
          break
        case 'reconnected':
          this.#safe('onReconnected', o.onReconnected)
          break
        case 'reconnecting':
          this.#safe('onReconnecting', o.onReconnecting, {
            attempt: data.attempt,
            delayMs: data.delayMs,
            error: data.error ? errorFromJson(data.error) : null,
          })
          break
        case 'error':
          this.#safe('onError', o.onError, errorFromJson(data))
          break
      }
    } catch {
      // Never throw into the native side: a throw from here would be fatal.
    }
  }

  // The per-event hot path. Rust hands over every event that is ready in one call, as
  // one JSON text `[[seq, messageId, traceId, receivedAt, eventId, eventType, payload], …]`
  // (each payload is the envelope as Feishu sent it, already checked to be a JSON
  // object; eventId and eventType are the ones dedupe keyed on). Handlers are
  // called in that order; each event is settled by seq: bare 200s in one settleOk() per
  // microtask turn, replies and failures one by one. A throw, a rejection or a result
  // JSON cannot serialise acks 500.
  #okSeqs = []
  #flushQueued = false

  #onEvents = (batch) => {
    const events = JSON.parse(batch)
    const onEvent = this.#options.onEvent
    for (let i = 0; i < events.length; i++) {
      const e = events[i]
      const seq = e[0]
      let result
      try {
        result = onEvent({
          payload: e[6],
          eventType: e[5],
          eventId: e[4],
          messageId: e[1],
          traceId: e[2],
          receivedAt: e[3],
        })
      } catch (err) {
        this.#fail(seq, err)
        continue
      }
      if (result instanceof Promise) {
        result.then((v) => this.#done(seq, v), (err) => this.#fail(seq, err))
      } else if (result !== null && (typeof result === 'object' || typeof result === 'function')) {
        // Thenables and plain objects, exactly as `await` would take them.
        Promise.resolve(result).then((v) => this.#done(seq, v), (err) => this.#fail(seq, err))
      } else {
        this.#done(seq, result)
      }
    }
  }

  #done(seq, value) {
    if (value === undefined || value === null) {
      this.#okSeqs.push(seq)
      if (!this.#flushQueued) {
        this.#flushQueued = true
        queueMicrotask(this.#flushOk)
      }
      return
    }
    let json
    try {
      // Throws for BigInt or circular results: a 500 ack.
      json = JSON.stringify(value)
    } catch (err) {
      this.#fail(seq, err)
      return
    }
    this.#native.settle(seq, json === undefined ? null : json, null)
  }

  #fail(seq, err) {
    this.#native.settle(seq, null, failureReason(err))
  }

  #flushOk = () => {
    this.#flushQueued = false
    const seqs = this.#okSeqs
    this.#okSeqs = []
    this.#native.settleOk(Float64Array.from(seqs))
  }

  /**
   * Connects and keeps the transport connected until it stops. Settles only then:
   * resolves { reason: 'closed' } after close(), { reason: 'aborted' } after the signal,
   * rejects with a FeishuTransportError when the transport gives up.
   */
  start(options = {}) {
    const signal = options && options.signal
    if (signal !== undefined && (signal === null || typeof signal.addEventListener !== 'function')) {
      return Promise.reject(invalid('signal must be an AbortSignal'))
    }
    if (signal && signal.aborted) {
      if (this.#native.running) {
        return Promise.reject(new FeishuTransportError('ALREADY_STARTED', 'start() was called while this transport is already running'))
      }
      return Promise.resolve({ reason: 'aborted' })
    }
    let running
    try {
      running = this.#native.start(this.#onEvents, this.#onLifecycle)
    } catch (e) {
      running = Promise.reject(e)
    }
    let onAbort
    if (signal) {
      onAbort = () => { this.#native.abort() }
      signal.addEventListener('abort', onAbort, { once: true })
    }
    return running.then((result) => {
      if (onAbort) signal.removeEventListener('abort', onAbort)
      if (result.error) throw errorFromJson(JSON.parse(result.error))
      return { reason: result.reason }
    }, (e) => {
      // The native side turns its own failures (a panic included) into the result above;
      // anything that still escapes is a bug, reported with a code like everything else.
      if (onAbort) signal.removeEventListener('abort', onAbort)
      throw e instanceof FeishuTransportError
        ? e
        : new FeishuTransportError('INTERNAL', `the transport stopped on an internal error: ${e && e.message ? e.message : String(e)}`, { terminal: true, cause: e })
    })
  }

  /**
   * Stops the transport and resolves once start() has settled. Waits up to drainMs
   * (default 5000) for in-flight handlers and sends their acks; force drops at once.
   */
  close(options = {}) {
    const force = Boolean(options && options.force)
    const drainMs = options && options.drainMs
    if (drainMs !== undefined && (typeof drainMs !== 'number' || drainMs < 0)) {
      return Promise.reject(invalid('drainMs must be a non-negative number'))
    }
    return this.#native.close(force, drainMs)
  }

  /** Cuts the live socket without acking in-flight events, then reconnects. */
  dropConnection(reason) {
    this.#native.dropConnection(reason === undefined ? undefined : String(reason))
  }

  /** A snapshot of the transport's state and counters. */
  status() {
    return JSON.parse(this.#native.statusJson())
  }
}

// Plain assignments, so Node's ESM loader can see the named exports of this CommonJS file.
module.exports.FeishuTransport = FeishuTransport
module.exports.FeishuTransportError = FeishuTransportError
module.exports.version = native.version()
// The emulator ships in the same binary: tests, the demo and users' own integration tests.
module.exports.FeishuEmulator = require('./emulator.js').FeishuEmulator
