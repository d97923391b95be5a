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

// Every option, by the object it belongs to. A key not listed is refused by name (a typo
// would otherwise be silently ignored, as TypeScript users are already told at compile
// time). `handlerTimeoutMs` and `discover` are read here and wired elsewhere.
const OPTION_KEYS = [
  'appId', 'appSecret', 'domain', 'onEvent', 'onReady', 'onReconnecting', 'onReconnected',
  'onError', 'onStatus', 'logger', 'logLevel', 'userAgent', 'proxy', 'tls', 'reconnect',
  'pingIntervalMs', 'timeouts', 'maxConcurrentHandlers', 'dedupe', 'handlerTimeoutMs', 'discover',
  'connections',
]
const NESTED_KEYS = {
  tls: ['caPem', 'systemRoots'],
  reconnect: ['initialDelayMs', 'maxDelayMs', 'multiplier', 'jitter', 'maxAttempts'],
  timeouts: ['discoveryMs', 'handshakeMs', 'pongMs', 'closeMs'],
  dedupe: ['ttlMs', 'maxEntries', 'store'],
}
const CLOSE_KEYS = ['force', 'drainMs']

/** Feishu's documented limit of long connections per app (core/config.rs MAX_CONNECTIONS). */
const MAX_CONNECTIONS = 50

/** The largest delay a timer takes (2^31 − 1 ms, about 24.8 days). */
const MAX_MS = 2147483647

/** Edit distance, for "did you mean": keys are short, so the plain table is enough. */
function distance(a, b) {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = row
  }
  return prev[b.length]
}

function didYouMean(key, known) {
  const lower = key.toLowerCase()
  let best = null
  let bestScore = Infinity
  for (const k of known) {
    const score = k.toLowerCase() === lower ? 0 : distance(lower, k.toLowerCase())
    if (score < bestScore) {
      best = k
      bestScore = score
    }
  }
  // Close means a slip of a few characters (a missing "Ms", a typo), not another word.
  return best !== null && bestScore <= Math.max(2, Math.floor(best.length / 4)) ? best : null
}

/**
 * A key name safe to print. A key may be anything, even a pasted secret, so only what
 * reads like a word is shown: letters, `_` or `$`, at most two digits at the end.
 */
function keyName(key) {
  return /^[A-Za-z_$]{1,40}[0-9]{0,2}$/.test(key) ? key : `(a key of ${key.length} characters, not shown)`
}

/**
 * Reads `obj`'s known keys once into a plain object, refusing unknown own keys. Getters
 * and Proxy traps run here, once; what they throw is wrapped by the caller.
 */
function readKeys(obj, known, path, reading) {
  reading.at = path || 'options'
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue
    if (path === 'tls' && (key === 'rejectUnauthorized' || key === 'insecure')) {
      throw invalid(`tls.${key} is not supported: certificates are always verified; trust a private CA with tls.caPem instead`)
    }
    const near = didYouMean(key, known)
    const where = path ? `${path}.` : ''
    throw invalid(`${where}${keyName(key)} is not a known option${near ? `; did you mean ${where}${near}?` : ''} (known: ${known.join(', ')})`)
  }
  const out = {}
  for (const key of known) {
    reading.at = path ? `${path}.${key}` : key
    const v = obj[key]
    if (v !== undefined) out[key] = v
  }
  return out
}

/**
 * A number option: finite (or Infinity where `infinite` allows it), within [min, max],
 * whole when `integer`. NaN, negative and non-finite values are refused by name.
 */
function numberOption(obj, key, path, { min = 0, max = MAX_MS, integer = false, infinite = false, unit = '' } = {}) {
  const v = obj[key]
  if (v === undefined) return undefined
  if (typeof v !== 'number') throw invalid(`${path} must be a number, got ${typeof v}`)
  if (infinite && v === Infinity) return v
  if (!Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    const what = integer ? 'a whole number' : `a finite number${unit}`
    const range = max === Infinity ? `of at least ${min}` : `between ${min} and ${max}`
    throw invalid(`${path} must be ${what} ${range}${infinite ? ', or Infinity' : ''}, got ${v}`)
  }
  return v
}

const ms = (obj, key, path, extra) => numberOption(obj, key, path, { unit: ' of milliseconds', ...extra })
const count = (obj, key, path) => numberOption(obj, key, path, { min: 1, max: 4294967295, integer: true })

function optionalFunction(obj, key) {
  const v = obj[key]
  if (v !== undefined && typeof v !== 'function') throw invalid(`${key} must be a function, got ${typeof v}`)
  return v
}

/** A plain object (not null, not an array, not a function) or a refusal naming `path`. */
function objectOption(v, path, what) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalid(`${path} must be ${what}`)
  return v
}

/**
 * Whatever reading the caller's objects threw (a throwing getter, a Proxy whose ownKeys
 * trap throws) as INVALID_CONFIG naming where, with the original as `cause`. Its message
 * is not repeated: it is the caller's text, and the cause keeps it.
 */
function readFailure(e, reading) {
  if (e instanceof FeishuTransportError) return e
  return new FeishuTransportError('INVALID_CONFIG', `reading ${reading.at} threw; the options must be readable plain values (the thrown value is the cause)`, { terminal: true, cause: e })
}

/**
 * Reads and checks the public options once. Returns the snapshot the transport keeps
 * (getters are not run again) and the flattened native options; throws INVALID_CONFIG
 * naming the option for anything that cannot work.
 */
function readOptions(options) {
  const reading = { at: 'options' }
  try {
    return checkOptions(options, reading)
  } catch (e) {
    throw readFailure(e, reading)
  }
}

function checkOptions(options, reading) {
  objectOption(options, 'options', 'an object')
  const o = readKeys(options, OPTION_KEYS, '', reading)
  reading.at = 'options'
  for (const key of ['appId', 'appSecret']) {
    if (typeof o[key] !== 'string') throw invalid(`${key} must be a string, got ${typeof o[key]}`)
  }
  if (typeof o.onEvent !== 'function') throw invalid('onEvent must be a function')
  for (const key of ['onReady', 'onReconnecting', 'onReconnected', 'onError', 'onStatus', 'logger', 'discover']) {
    optionalFunction(o, key)
  }
  if (o.domain !== undefined) {
    if (typeof o.domain !== 'string') throw invalid(`domain must be a string, got ${typeof o.domain}`)
    if (o.domain.trim() === '') throw invalid("domain must be 'feishu', 'lark' or an http(s) URL, got an empty string (leave it out for 'feishu')")
  }
  if (o.userAgent !== undefined && typeof o.userAgent !== 'string') throw invalid(`userAgent must be a string, got ${typeof o.userAgent}`)
  if (o.logLevel !== undefined && !LOG_LEVELS.includes(o.logLevel)) {
    throw invalid(`logLevel must be one of ${LOG_LEVELS.join(', ')}`)
  }
  const n = { appId: o.appId, appSecret: o.appSecret, domain: o.domain, userAgent: o.userAgent }
  // Without an onStatus there is nobody to tell: the native side then skips serialising a
  // status snapshot and crossing into JavaScript at every change (backpressure on and off
  // at every burst of a saturated transport).
  n.statusNotes = typeof o.onStatus === 'function'
  // Three states, which napi cannot tell apart by itself: undefined reads the
  // environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY), null connects directly.
  if (!('proxy' in o)) n.proxyMode = 'env'
  else if (o.proxy === null) n.proxyMode = 'none'
  else if (typeof o.proxy === 'string' && o.proxy.trim() !== '') {
    n.proxyMode = 'url'
    n.proxy = o.proxy
  } else {
    throw invalid('proxy must be a proxy URL (http://, https://, socks5:// or socks5h://), null (direct) or undefined (the environment)')
  }
  if (o.tls !== undefined) {
    const tls = readKeys(objectOption(o.tls, 'tls', 'an object'), NESTED_KEYS.tls, 'tls', reading)
    const ca = tls.caPem
    if (typeof ca === 'string') n.tlsCaPem = ca
    else if (ca instanceof Uint8Array) n.tlsCaPem = Buffer.from(ca.buffer, ca.byteOffset, ca.byteLength).toString('utf8')
    else if (ca !== undefined) throw invalid('tls.caPem must be a PEM string or a Buffer')
    if (tls.systemRoots !== undefined && typeof tls.systemRoots !== 'boolean') {
      throw invalid('tls.systemRoots must be a boolean')
    }
    n.tlsSystemRoots = tls.systemRoots
    o.tls = tls
  }
  n.logLevel = o.logLevel
  if (o.reconnect === false) n.reconnect = false
  else if (o.reconnect !== undefined && o.reconnect !== true) {
    const r = readKeys(objectOption(o.reconnect, 'reconnect', 'a boolean or an object'), NESTED_KEYS.reconnect, 'reconnect', reading)
    n.reconnect = true
    n.initialDelayMs = ms(r, 'initialDelayMs', 'reconnect.initialDelayMs')
    n.maxDelayMs = ms(r, 'maxDelayMs', 'reconnect.maxDelayMs')
    n.multiplier = numberOption(r, 'multiplier', 'reconnect.multiplier', { min: 1, max: Infinity })
    n.jitter = numberOption(r, 'jitter', 'reconnect.jitter', { min: 0, max: 1 })
    n.maxAttempts = count(r, 'maxAttempts', 'reconnect.maxAttempts')
    o.reconnect = r
  }
  n.pingIntervalMs = ms(o, 'pingIntervalMs', 'pingIntervalMs', { min: 100 })
  if (o.timeouts !== undefined) {
    const t = readKeys(objectOption(o.timeouts, 'timeouts', 'an object'), NESTED_KEYS.timeouts, 'timeouts', reading)
    n.discoveryTimeoutMs = ms(t, 'discoveryMs', 'timeouts.discoveryMs', { min: 1 })
    n.handshakeTimeoutMs = ms(t, 'handshakeMs', 'timeouts.handshakeMs', { min: 1 })
    n.pongTimeoutMs = ms(t, 'pongMs', 'timeouts.pongMs', { min: 1 })
    n.closeTimeoutMs = ms(t, 'closeMs', 'timeouts.closeMs', { min: 1 })
    o.timeouts = t
  }
  n.maxConcurrentHandlers = count(o, 'maxConcurrentHandlers', 'maxConcurrentHandlers')
  n.connections = numberOption(o, 'connections', 'connections', { min: 1, max: MAX_CONNECTIONS, integer: true })
  if (o.dedupe === false) n.dedupe = false
  else if (o.dedupe !== undefined && o.dedupe !== true) {
    const d = readKeys(objectOption(o.dedupe, 'dedupe', 'false or an object'), NESTED_KEYS.dedupe, 'dedupe', reading)
    n.dedupeTtlMs = ms(d, 'ttlMs', 'dedupe.ttlMs', { min: 1 })
    n.dedupeMaxEntries = count(d, 'maxEntries', 'dedupe.maxEntries')
    // The form is checked natively (core/store.rs), which names the accepted ones.
    if (d.store !== undefined && typeof d.store !== 'string') throw invalid(`dedupe.store must be a string ('memory', 'sqlite:<path>', 'redis://…' or 'rediss://…'), got ${typeof d.store}`)
    n.dedupeStore = d.store
    o.dedupe = d
  }
  // 0 and Infinity both mean "no handler timeout"; the native side knows only 0.
  const handlerTimeoutMs = ms(o, 'handlerTimeoutMs', 'handlerTimeoutMs', { infinite: true })
  if (handlerTimeoutMs !== undefined) n.handlerTimeoutMs = handlerTimeoutMs === Infinity ? 0 : handlerTimeoutMs
  return { options: o, native: n }
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
    // Read once: the transport keeps this snapshot, so a getter cannot answer
    // differently (or throw) later.
    const { options: snapshot, native: nativeOptions } = readOptions(options)
    // Handed over beside the options, not in them: a function is not an option value.
    const discover = discoveryHook(snapshot.discover)
    try {
      this.#native = new native.NativeTransport(nativeOptions, discover)
    } catch (e) {
      throw toTransportError(e)
    }
    this.#options = snapshot
    const logger = snapshot.logger ?? defaultLogger
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
          this.#safe('onReady', o.onReady, { connection: data.connection })
          break
        case 'reconnected':
          this.#safe('onReconnected', o.onReconnected, { connection: data.connection })
          break
        case 'reconnecting':
          this.#safe('onReconnecting', o.onReconnecting, {
            connection: data.connection,
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
    const reading = { at: 'close() options' }
    let force, drainMs
    try {
      if (options !== undefined && options !== null) {
        const o = readKeys(objectOption(options, 'close() options', 'an object'), CLOSE_KEYS, 'close()', reading)
        force = o.force
        drainMs = ms(o, 'drainMs', 'close() drainMs')
      }
      if (force !== undefined && typeof force !== 'boolean') throw invalid(`close() force must be a boolean, got ${typeof force}`)
    } catch (e) {
      return Promise.reject(readFailure(e, reading))
    }
    return this.#native.close(Boolean(force), drainMs).catch((e) => { throw toTransportError(e) })
  }

  /**
   * Cuts the live socket without acking in-flight events, then reconnects: connection
   * `options.connection` only, or every connection when it is left out.
   */
  dropConnection(reason, options) {
    let connection
    if (options !== undefined && options !== null) {
      const reading = { at: 'dropConnection() options' }
      try {
        const o = readKeys(objectOption(options, 'dropConnection() options', 'an object'), ['connection'], 'dropConnection()', reading)
        connection = numberOption(o, 'connection', 'dropConnection() connection', { min: 0, max: (this.#options.connections ?? 1) - 1, integer: true })
      } catch (e) {
        throw readFailure(e, reading)
      }
    }
    this.#native.dropConnection(reason === undefined ? undefined : String(reason), connection)
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
