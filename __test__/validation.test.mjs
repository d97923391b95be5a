// Every option is checked at construction: wrong types, bad values, unknown keys (with a
// "did you mean"), throwing getters and Proxies all give a FeishuTransportError with code
// INVALID_CONFIG, whose message names the option and never carries the planted secret.
// close() options likewise. And the two options that were accepted but could not work:
// an upper-case scheme in `domain`, and zero reconnect delays (a discovery storm).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { FeishuTransport, FeishuTransportError, FeishuEmulator } from '../index.js'
import { deferred, waitFor } from './helpers.mjs'

const SECRET = 'PLANTED-secret-0123456789abcdef'
const base = () => ({ appId: 'cli_a1b2c3d4e5f60718', appSecret: SECRET, domain: 'http://127.0.0.1:9', proxy: null, logLevel: 'silent', onEvent() {} })

function throwing(message = `boom ${SECRET}`) {
  return { get() { throw new Error(message) }, enumerable: true, configurable: true }
}

// [what, options (or a function building them), a pattern the message must match]
const cases = [
  ['options: null', () => null, /options must be an object/],
  ['options: a string', () => 'cli_a1b2c3d4e5f60718', /options must be an object/],
  ['options: an array', () => [], /options must be an object/],
  ['appId missing', { appId: undefined }, /appId must be a string/],
  ['appId a number', { appId: 42 }, /appId must be a string/],
  ['appId malformed', { appId: 'cli_123' }, /appId must look like cli_/],
  ['appId holding the secret', { appId: SECRET }, /31 characters/],
  ['appSecret missing', { appSecret: undefined }, /appSecret must be a string/],
  ['appSecret empty', { appSecret: '  ' }, /appSecret must not be empty/],
  ['appSecret with a newline', { appSecret: `${SECRET}\n` }, /control characters/],
  ['appSecret with a NUL', { appSecret: `${SECRET}\0` }, /control characters/],
  ['appSecret an app id', { appSecret: 'cli_a1b2c3d4e5f60718' }, /swapped/],
  ['onEvent missing', { onEvent: undefined }, /onEvent must be a function/],
  ['onEvent a string', { onEvent: 'handler' }, /onEvent must be a function/],
  ...['onReady', 'onReconnecting', 'onReconnected', 'onError', 'onStatus', 'logger', 'discover'].map((k) => [`${k} not a function`, { [k]: 1 }, new RegExp(`${k} must be a function`)]),
  ['domain a number', { domain: 42 }, /domain must be a string/],
  ['domain empty', { domain: '' }, /empty/],
  ['domain blank', { domain: '   ' }, /empty/],
  ['domain ftp', { domain: 'ftp://x' }, /http\(s\) URL/],
  ['domain not a URL', { domain: 'not a url' }, /does not parse/],
  ['domain with a query', { domain: `https://x/?k=${SECRET}` }, /query/],
  ['userAgent a number', { userAgent: 42 }, /userAgent must be a string/],
  ['userAgent of 100 KB', { userAgent: 'x'.repeat(100_000) }, /userAgent must be at most 512/],
  ['userAgent with CR LF', { userAgent: 'bot/1\r\nX-Evil: 1' }, /printable ASCII/],
  ['logLevel unknown', { logLevel: 'loud' }, /logLevel must be one of/],
  ['proxy a number', { proxy: 42 }, /proxy must be a proxy URL/],
  ['proxy empty', { proxy: '' }, /proxy must be a proxy URL/],
  ['proxy unparseable', { proxy: `http://u:pa/ss${SECRET}@p:3128` }, /not percent-encoded/],
  ['proxy SOCKS4', { proxy: `socks4://u:${SECRET}@p:1080` }, /SOCKS4/],
  ['proxy ftp', { proxy: `ftp://u:${SECRET}@p` }, /unsupported scheme/],
  ['tls a number', { tls: 42 }, /tls must be an object/],
  ['tls null', { tls: null }, /tls must be an object/],
  ['tls.rejectUnauthorized', { tls: { rejectUnauthorized: false } }, /always verified/],
  ['tls.caPem a number', { tls: { caPem: 42 } }, /tls.caPem must be a PEM/],
  ['tls.systemRoots a string', { tls: { systemRoots: 'yes' } }, /tls.systemRoots must be a boolean/],
  ['tls.capem (typo)', { tls: { capem: 'x' } }, /tls.capem is not a known option; did you mean tls.caPem\?/],
  ['reconnect a number', { reconnect: 42 }, /reconnect must be a boolean or an object/],
  ['reconnect null', { reconnect: null }, /reconnect must be a boolean or an object/],
  ['reconnect.initialDelayMs NaN', { reconnect: { initialDelayMs: NaN } }, /reconnect.initialDelayMs must be a finite number/],
  ['reconnect.initialDelayMs negative', { reconnect: { initialDelayMs: -1 } }, /reconnect.initialDelayMs/],
  ['reconnect.initialDelayMs Infinity', { reconnect: { initialDelayMs: Infinity } }, /reconnect.initialDelayMs/],
  ['reconnect.maxDelayMs a string', { reconnect: { maxDelayMs: '5' } }, /reconnect.maxDelayMs must be a number/],
  ['reconnect.maxDelayMs 3e9', { reconnect: { maxDelayMs: 3e9 } }, /between 0 and 2147483647/],
  ['reconnect.maxDelayMs below initialDelayMs', { reconnect: { initialDelayMs: 500, maxDelayMs: 100 } }, /must not be below/],
  ['reconnect.multiplier 0.5', { reconnect: { multiplier: 0.5 } }, /reconnect.multiplier/],
  ['reconnect.multiplier NaN', { reconnect: { multiplier: NaN } }, /reconnect.multiplier/],
  ['reconnect.multiplier Infinity', { reconnect: { multiplier: Infinity } }, /reconnect.multiplier/],
  ['reconnect.jitter 2', { reconnect: { jitter: 2 } }, /reconnect.jitter/],
  ['reconnect.jitter -0.1', { reconnect: { jitter: -0.1 } }, /reconnect.jitter/],
  ['reconnect.maxAttempts 0', { reconnect: { maxAttempts: 0 } }, /reconnect.maxAttempts/],
  ['reconnect.maxAttempts 1.5', { reconnect: { maxAttempts: 1.5 } }, /reconnect.maxAttempts must be a whole number/],
  ['reconnect.initialDelay (typo)', { reconnect: { initialDelay: 10 } }, /did you mean reconnect.initialDelayMs\?/],
  ['pingIntervalMs NaN', { pingIntervalMs: NaN }, /pingIntervalMs/],
  ['pingIntervalMs 50', { pingIntervalMs: 50 }, /pingIntervalMs/],
  ['pingIntervalMs Infinity', { pingIntervalMs: Infinity }, /pingIntervalMs/],
  ['pingIntervalMs a string', { pingIntervalMs: '1000' }, /pingIntervalMs must be a number/],
  ['timeouts a number', { timeouts: 42 }, /timeouts must be an object/],
  ['timeouts.discoveryMs 0', { timeouts: { discoveryMs: 0 } }, /timeouts.discoveryMs/],
  ['timeouts.pongMs NaN', { timeouts: { pongMs: NaN } }, /timeouts.pongMs/],
  ['timeouts.closeMs -5', { timeouts: { closeMs: -5 } }, /timeouts.closeMs/],
  ['timeouts.handshakeMs Infinity', { timeouts: { handshakeMs: Infinity } }, /timeouts.handshakeMs/],
  ['timeouts.handshake (typo)', { timeouts: { handshake: 100 } }, /did you mean timeouts.handshakeMs\?/],
  ['maxConcurrentHandlers 0', { maxConcurrentHandlers: 0 }, /maxConcurrentHandlers/],
  ['maxConcurrentHandlers 1.5', { maxConcurrentHandlers: 1.5 }, /maxConcurrentHandlers/],
  ['maxConcurrentHandlers NaN', { maxConcurrentHandlers: NaN }, /maxConcurrentHandlers/],
  ['maxConcurrentHandlers Infinity', { maxConcurrentHandlers: Infinity }, /maxConcurrentHandlers/],
  ['connections 0', { connections: 0 }, /connections must be a whole number between 1 and 50/],
  ['connections 51 (over Feishu\'s limit)', { connections: 51 }, /connections must be a whole number between 1 and 50/],
  ['connections 1.5', { connections: 1.5 }, /connections must be a whole number/],
  ['connections a string', { connections: '2' }, /connections must be a number/],
  ['dedupe a number', { dedupe: 42 }, /dedupe must be false or an object/],
  ['dedupe null', { dedupe: null }, /dedupe must be false or an object/],
  ['dedupe.ttlMs 0', { dedupe: { ttlMs: 0 } }, /dedupe.ttlMs/],
  ['dedupe.maxEntries 0', { dedupe: { maxEntries: 0 } }, /dedupe.maxEntries/],
  ['dedupe.ttl (typo)', { dedupe: { ttl: 5 } }, /did you mean dedupe.ttlMs\?/],
  ['handlerTimeoutMs NaN', { handlerTimeoutMs: NaN }, /handlerTimeoutMs/],
  ['handlerTimeoutMs negative', { handlerTimeoutMs: -1 }, /handlerTimeoutMs/],
  ['handlerTimeoutMs 3e9', { handlerTimeoutMs: 3e9 }, /handlerTimeoutMs/],
  ['handlerTimeoutMs a string', { handlerTimeoutMs: '5' }, /handlerTimeoutMs must be a number/],
  ['an unknown key', { colour: 'blue' }, /colour is not a known option \(known: appId/],
  ['appSecrt (typo)', { appSecrt: 'x' }, /did you mean appSecret\?/],
  ['onevent (case)', { onevent() {} }, /did you mean onEvent\?/],
  ['maxConcurrentHandler (typo)', { maxConcurrentHandler: 2 }, /did you mean maxConcurrentHandlers\?/],
  ['a key that is a secret', { [SECRET]: 1 }, /a key of 31 characters, not shown/],
  ['a key that is an alphanumeric secret', { Xq7vR2mK9pL4sT8wY1zB3nC6dF0gH5jA: 1 }, /a key of 32 characters, not shown/],
  ['a throwing getter', () => Object.defineProperty(base(), 'reconnect', throwing()), /reading reconnect threw/],
  ['a throwing nested getter', () => ({ ...base(), timeouts: Object.defineProperty({}, 'pongMs', throwing()) }), /reading timeouts.pongMs threw/],
  ['a throwing appSecret getter', () => Object.defineProperty(base(), 'appSecret', throwing()), /reading appSecret threw/],
  ['a Proxy whose ownKeys throws', () => new Proxy(base(), { ownKeys() { throw new Error(`no keys ${SECRET}`) } }), /reading options threw/],
  ['a Proxy whose get throws', () => new Proxy(base(), { get(t, k) { if (k === 'onEvent') throw new Error(SECRET); return t[k] } }), /reading onEvent threw/],
  ['a nested Proxy whose ownKeys throws', () => ({ ...base(), dedupe: new Proxy({}, { ownKeys() { throw new RangeError('x') } }) }), /reading dedupe threw/],
]

function build(options) {
  return typeof options === 'function' ? options() : { ...base(), ...options }
}

function assertInvalid(e, pattern, what) {
  assert.ok(e instanceof FeishuTransportError, `${what}: a FeishuTransportError, got ${e && e.constructor && e.constructor.name}: ${e && e.message}`)
  assert.equal(e.code, 'INVALID_CONFIG', what)
  assert.equal(e.terminal, true, what)
  assert.match(e.message, pattern, what)
  assert.ok(!e.message.includes(SECRET), `${what}: the secret is in ${e.message}`)
  assert.ok(!e.message.includes(SECRET.slice(0, 12)), `${what}: part of the secret is in ${e.message}`)
}

for (const [what, options, pattern] of cases) {
  test(`INVALID_CONFIG: ${what}`, () => {
    let thrown
    try {
      new FeishuTransport(build(options))
    } catch (e) {
      thrown = e
    }
    assert.ok(thrown, `${what}: accepted`)
    assertInvalid(thrown, pattern, what)
    if (/threw/.test(what) || /Proxy/.test(what)) {
      assert.ok(thrown.cause instanceof Error, `${what}: the original error is the cause`)
    }
  })
}

test('the options the table refuses are accepted in their good forms', () => {
  for (const extra of [
    {},
    { handlerTimeoutMs: 0 },
    { handlerTimeoutMs: Infinity },
    { handlerTimeoutMs: 30_000 },
    { discover: async () => ({}) },
    { reconnect: { initialDelayMs: 0, maxDelayMs: 0 } },
    { reconnect: true, dedupe: true, tls: {}, timeouts: {} },
    { domain: 'HTTP://127.0.0.1:9' },
    { domain: 'lark', userAgent: 'openclaw/1.0 (linux)' },
    { appSecret: 'a secret with spaces inside' },
    { onError: undefined, logger: undefined, proxy: undefined },
  ]) {
    new FeishuTransport({ ...base(), ...extra })
  }
})

test('options are read once: a getter is not run again after construction', async () => {
  let reads = 0
  const options = base()
  Object.defineProperty(options, 'onEvent', { get() { reads++; return () => {} }, enumerable: true })
  new FeishuTransport(options)
  assert.equal(reads, 1)
})

test('close() refuses bad options with INVALID_CONFIG as a rejected promise', async () => {
  const t = new FeishuTransport(base())
  for (const [what, options, pattern] of [
    ['drainMs NaN', { drainMs: NaN }, /drainMs/],
    ['drainMs Infinity', { drainMs: Infinity }, /drainMs/],
    ['drainMs 3e9', { drainMs: 3e9 }, /drainMs/],
    ['drainMs -1', { drainMs: -1 }, /drainMs/],
    ['drainMs a string', { drainMs: '5' }, /drainMs must be a number/],
    ['force a string', { force: 'yes' }, /force must be a boolean/],
    ['drain (typo)', { drain: 5 }, /did you mean close\(\).drainMs\?/],
    ['a number', 5, /close\(\) options must be an object/],
    ['a throwing getter', Object.defineProperty({}, 'drainMs', throwing()), /reading close\(\).drainMs threw/],
  ]) {
    let result
    assert.doesNotThrow(() => { result = t.close(options) }, what)
    assert.ok(result instanceof Promise, what)
    const e = await result.then(() => assert.fail(`${what}: resolved`), (err) => err)
    assertInvalid(e, pattern, `close(${what})`)
  }
  await t.close({ drainMs: 0 })
  await t.close({ force: true })
  await t.close()
})

test('an upper-case scheme in domain is the same domain: the emulator is reached over ws://', async () => {
  const emulator = await FeishuEmulator.start()
  try {
    const first = deferred()
    const t = new FeishuTransport({
      ...base(),
      appId: emulator.appId,
      appSecret: emulator.appSecret,
      domain: emulator.domain.replace(/^http:/, 'HTTP:'),
      onReady: () => first.resolve('ready'),
      // before the fix: PROTOCOL_ERROR (a ws:// URL for an "https" domain), for ever
      onError: (e) => first.resolve(`${e.code}: ${e.message}`),
    })
    const running = t.start()
    assert.equal(await first.promise, 'ready')
    await t.close()
    assert.deepEqual(await running, { reason: 'closed' })
  } finally {
    await emulator.close()
  }
})

test('zero reconnect delays cannot storm a failing discovery endpoint: at most a few attempts a second', async () => {
  const calls = []
  const server = http.createServer((req, res) => {
    calls.push(performance.now())
    res.writeHead(500).end('down')
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    const t = new FeishuTransport({
      ...base(),
      domain: `http://127.0.0.1:${server.address().port}`,
      reconnect: { initialDelayMs: 0, maxDelayMs: 0, jitter: 0 },
    })
    const running = t.start()
    await waitFor(() => calls.length >= 8, { what: '8 discovery calls' })
    await t.close()
    await running
    // The pacer lets two attempts start at once, then one per 250 ms: n calls span at
    // least (n − 2) × 250 ms. One call of slack for the network between the attempt's
    // start and its arrival here. (Before the floor: hundreds of calls a second.)
    for (let i = 0; i < calls.length; i++) {
      for (let j = i + 1; j < calls.length; j++) {
        const span = calls[j] - calls[i]
        assert.ok(j - i + 1 <= 3 + span / 250, `${j - i + 1} discovery calls within ${span.toFixed(0)} ms`)
      }
    }
  } finally {
    await new Promise((resolve) => server.close(resolve))
  }
})
