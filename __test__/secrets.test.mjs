// Every log line and every error message of a session full of failures is free of the
// app secret, the socket URL's access_key and ticket, proxy credentials and bearer tokens.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { inspect } from 'node:util'
import { FeishuTransport, FeishuTransportError, FeishuEmulator } from '../index.js'
import { deferred, fastOptions, waitFor } from './helpers.mjs'
import { withProxyEnv } from './support/proxies.mjs'

test('no secret reaches a log line or an error message', async () => {
  const secret = 'S3cr3t-app-secret-value'
  const emulator = await FeishuEmulator.start({ appSecret: secret, ackDeadlineMs: 200, maxRedeliveries: 1 })
  const lines = []
  const errors = []
  const collect = (e) => { for (let x = e; x; x = x.cause) errors.push(`${x.code} ${x.message}`) }
  try {
    // wrong secret: a terminal failure with a message about it
    const bad = new FeishuTransport(fastOptions(emulator, { appSecret: `${secret}-wrong`, logLevel: 'debug', logger: (l, m) => lines.push(m), onError: collect }))
    await bad.start().catch(collect)

    emulator.failDiscovery({ count: 1, kind: 'http-status', status: 500 })
    emulator.failDiscovery({ count: 1, kind: 'body', body: `{"oops": "Bearer abc.def.ghi access_key=deadbeef ticket=t-1 ${secret}"}` })
    emulator.rejectHandshakes({ count: 1, httpStatus: 500, handshakeStatus: 500, msg: `nope ${secret}` })
    const ready = deferred()
    const t = new FeishuTransport(fastOptions(emulator, {
      logLevel: 'debug',
      logger: (l, m) => lines.push(m),
      onError: collect,
      onReady: ready.resolve,
      onEvent: () => { throw new Error(`handler failed: Authorization: Bearer tok.en.value appSecret=${secret}`) },
    }))
    const running = t.start()
    await ready.promise
    const id = emulator.pushSample('message-receive-text')
    await emulator.waitForAck(id, { timeoutMs: 5000, code: 500 })
    emulator.dropConnections(null, false)
    await waitFor(() => t.status().counters.reconnects === 1 && t.status().connected, { what: 'reconnect' })
    await t.close()
    await running
    const status = JSON.stringify(t.status())

    assert.ok(lines.length > 10, `only ${lines.length} lines`)
    for (const text of [...lines, ...errors, status]) {
      assert.ok(!text.includes(secret), text)
      assert.ok(!/access_key=(?!\[redacted\])/.test(text), text)
      assert.ok(!/ticket=(?!\[redacted\])/.test(text), text)
      assert.ok(!/Bearer (?!\[redacted\])/.test(text), text)
      assert.ok(!text.includes('\n'), text)
    }
  } finally {
    await emulator.close()
  }
})

// ---------------------------------------------------------------------------------------
// Issue 20: six ways a secret reached a message. Each case plants the secret, then
// searches everything a user or a crash reporter can see: every log line, every error
// (rejection, onError, onReconnecting) with its causes, as message, util.inspect and
// JSON.stringify, status() and the transport object itself.

/** Collects every visible text of one transport. */
function observer() {
  const texts = []
  const errors = []
  const addError = (e) => {
    if (!e || typeof e !== 'object') return
    errors.push(e)
    for (let x = e; x; x = x.cause) {
      texts.push(`${x.code} ${x.message}`, inspect(x, { depth: 5 }), JSON.stringify({ ...x, message: x.message }))
    }
  }
  return {
    texts,
    errors,
    addError,
    options: {
      logLevel: 'debug',
      logger: (level, line) => texts.push(line),
      onError: addError,
      onReconnecting: (info) => {
        texts.push(inspect(info, { depth: 5 }))
        addError(info.error)
      },
      onStatus: (s) => texts.push(JSON.stringify(s)),
    },
    /** Adds what can be read off the transport afterwards. */
    transport(t) {
      texts.push(JSON.stringify(t.status()), inspect(t.status(), { depth: 5 }), inspect(t, { depth: 5 }), JSON.stringify(t) ?? '')
    },
  }
}

/** No text holds `secret`, nor a prefix of it of 6 characters or more. */
function assertNoSecret(texts, secret, label = secret) {
  assert.ok(texts.length > 0, 'nothing was collected')
  for (const text of texts) {
    for (let n = Math.min(6, secret.length); n <= secret.length; n++) {
      assert.ok(!text.includes(secret.slice(0, n)), `${label} (its first ${n} characters) in: ${text}`)
    }
  }
}

/** What the constructor threw for `options`, as texts. */
function constructorError(options) {
  const o = observer()
  try {
    new FeishuTransport(options)
  } catch (e) {
    assert.ok(e instanceof FeishuTransportError, `a FeishuTransportError: ${e}`)
    assert.equal(e.code, 'INVALID_CONFIG')
    o.addError(e)
    return { error: e, texts: o.texts }
  }
  assert.fail('the constructor accepted it')
}

test('1. a proxy URL that does not parse is never quoted, from the option or the environment', async () => {
  const secret = 'SECRET1-pr0xy'
  const emulator = await FeishuEmulator.start()
  try {
    for (const bad of [
      `http://user:pa/ss-${secret}@proxy:3128`,
      `http://user:pa#ss-${secret}@proxy:3128`,
      `http://user:pa?ss-${secret}@proxy:3128`,
      `http://user:12/ss-${secret}@proxy:3128`,
      `socks5://user:${secret}@proxy:99999`,
    ]) {
      const { error, texts } = constructorError(fastOptions(emulator, { proxy: bad }))
      assertNoSecret(texts, secret, bad)
      assert.ok(!error.message.includes('pa/ss') && !error.message.includes('user:'), error.message)
      assert.match(error.message, /proxy/)
      for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY']) {
        // HTTPS_PROXY applies to an https domain, HTTP_PROXY to the emulator's http one
        const domain = name === 'HTTPS_PROXY' ? 'https://open.example.com' : emulator.domain
        const r = withProxyEnv({ [name]: bad }, () => constructorError(fastOptions(emulator, { proxy: undefined, domain })))
        assertNoSecret(r.texts, secret, `${name}=${bad}`)
        assert.ok(r.error.message.includes(name), r.error.message)
      }
    }
    const { error } = constructorError(fastOptions(emulator, { proxy: `http://user:pa/ss-${secret}@proxy:3128` }))
    assert.match(error.message, /not percent-encoded/, 'says which part is wrong')
  } finally {
    await emulator.close()
  }
})

test('2. a secret echoed at the 500-character cut is hidden whole, not cut into a prefix that survives', async () => {
  const secret = 'refsecret-DO-NOT-LOG-0123'
  const emulator = await FeishuEmulator.start({ appSecret: secret })
  const o = observer()
  try {
    // "endpoint discovery failed: server busy (code 1: " precedes msg; the cut keeps 497
    // characters and "...": this padding puts the cut 20 characters into the secret.
    const prefix = 'endpoint discovery failed: server busy (code 1: '
    const pad = 'x'.repeat(497 - 20 - prefix.length)
    emulator.failDiscovery({ kind: 'code', code: 1, msg: `${pad}${secret} and more after it` })
    const t = new FeishuTransport(fastOptions(emulator, { ...o.options, reconnect: false }))
    const err = await t.start().then(() => assert.fail('resolved'), (e) => e)
    o.addError(err)
    o.transport(t)
    assert.equal(err.code, 'DISCOVERY_FAILED')
    assert.ok(err.message.endsWith('...') && err.message.length <= 500, err.message)
    assert.ok(err.message.includes('[redacted]'), err.message)
    assert.equal(t.status().lastError.message, err.message)
    assertNoSecret(o.texts, secret)
  } finally {
    await emulator.close()
  }
})

test('4. the access_key and ticket of the socket URL are hidden however a server names them', async () => {
  const accessKey = 'AKEY0123456789abcdef'
  const ticket = 'TICKET-7a1c2e3f-0001'
  const emulator = await FeishuEmulator.start()
  const o = observer()
  try {
    const url = `ws://127.0.0.1:${emulator.port}/ws/v2?fpid=493&aid=552564&device_id=d1&access_key=${accessKey}&service_id=1&ticket=${ticket}`
    emulator.failDiscovery({ kind: 'url', url })
    emulator.rejectHandshakes({ httpStatus: 403, handshakeStatus: 403, msg: `access key ${accessKey} is expired; invalid ticket ${ticket}` })
    const t = new FeishuTransport(fastOptions(emulator, { ...o.options }))
    const err = await t.start().then(() => assert.fail('resolved'), (e) => e)
    o.addError(err)
    o.transport(t)
    assert.equal(err.code, 'FORBIDDEN')
    assert.match(err.message, /access key \[redacted\] is expired; invalid ticket \[redacted\]/)
    assertNoSecret(o.texts, accessKey)
    assertNoSecret(o.texts, ticket)
  } finally {
    await emulator.close()
  }
})

test('5. appId and appSecret swapped: the secret is described by length and shape, never shown', async () => {
  const secret = 'Xq7vR2mK9pL4sT8wY1zB3nC6dF0gH5jA'
  const { error, texts } = constructorError({ appId: secret, appSecret: 'cli_a1b2c3d4e5f60718', onEvent() {} })
  assertNoSecret(texts, secret)
  assert.match(error.message, /32 characters \(letters, digits\)/)
  assert.match(error.message, /swapped/)
})

test('6. the Basic form of the proxy credentials is hidden when a proxy echoes it', async () => {
  const user = 'alice'
  const password = 'PROXYPASS@x-secret'
  const basic = Buffer.from(`${user}:${password}`).toString('base64')
  const emulator = await FeishuEmulator.start()
  // A proxy that repeats the credentials it was sent in its status line.
  const proxy = net.createServer((socket) => {
    let head = ''
    socket.on('data', (chunk) => {
      head += chunk
      if (!head.includes('\r\n\r\n')) return
      const got = /Proxy-Authorization: Basic (\S+)/.exec(head)
      socket.end(`HTTP/1.1 407 credentials ${got ? got[1] : '-'} rejected\r\nContent-Length: 0\r\n\r\n`)
    })
    socket.on('error', () => {})
  })
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  const o = observer()
  try {
    const t = new FeishuTransport(fastOptions(emulator, {
      ...o.options,
      reconnect: false,
      proxy: `http://${user}:${encodeURIComponent(password)}@127.0.0.1:${proxy.address().port}`,
    }))
    const err = await t.start().then(() => assert.fail('resolved'), (e) => e)
    o.addError(err)
    o.transport(t)
    assert.equal(err.code, 'PROXY_ERROR')
    assert.match(err.message, /HTTP 407 credentials \[redacted\] rejected/)
    assertNoSecret(o.texts, basic)
    assertNoSecret(o.texts, basic.replace(/=+$/, ''))
    assertNoSecret(o.texts, password)
  } finally {
    await new Promise((resolve) => proxy.close(resolve))
    await emulator.close()
  }
})
