// Proxies end to end: the transport against the emulator through loopback HTTP CONNECT
// and SOCKS5 proxies that count what passed through them. Discovery and the socket both
// tunnel (two CONNECTs per attempt), NO_PROXY bypasses, `proxy: null` ignores the
// environment, and a failing proxy is a PROXY_ERROR that is retried.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FeishuTransport, FeishuEmulator } from '../index.js'
import { deferred, fastOptions, waitFor } from './helpers.mjs'
import { closedPort, startProxy, withProxyEnv } from './support/proxies.mjs'

const PASSWORD = 'pr0xy-p@ss:word'
const ev = (id) => ({ schema: '2.0', header: { event_id: id, event_type: 'im.message.receive_v1' }, event: { n: id } })

/** Starts `transport` and waits for onReady; returns the running promise. */
async function connect(options) {
  const ready = deferred()
  const t = new FeishuTransport({ ...options, onReady: ready.resolve })
  const running = t.start()
  running.catch(() => {})
  await Promise.race([ready.promise, running.then((r) => { throw new Error(`settled before ready: ${JSON.stringify(r)}`) })])
  return { t, running }
}

/** Both connections of one attempt went through `proxy`: discovery, then the socket. */
function assertTunnelled(proxy, emulator, attempts = 1) {
  const target = `127.0.0.1:${emulator.port}`
  assert.deepEqual(proxy.tunnels, Array(2 * attempts).fill(target))
}

for (const [name, kind, auth] of [
  ['HTTP CONNECT', 'http', null],
  ['HTTP CONNECT with credentials', 'http', { user: 'alice', pass: PASSWORD }],
  ['SOCKS5', 'socks5', null],
  ['SOCKS5 with credentials', 'socks5', { user: 'bob', pass: PASSWORD }],
]) {
  test(`discovery and the socket both go through a ${name} proxy, and events flow`, async () => {
    const emulator = await FeishuEmulator.start()
    const proxy = await startProxy({ kind, auth })
    const lines = []
    try {
      const { t, running } = await connect(fastOptions(emulator, {
        proxy: auth ? proxy.urlWith(auth.user, auth.pass) : proxy.url,
        logLevel: 'debug',
        logger: (level, message) => lines.push(message),
      }))
      assertTunnelled(proxy, emulator)
      const id = emulator.pushEvent(ev(`via-${kind}`))
      assert.equal((await emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
      // the next attempt tunnels again: a fresh discovery and a fresh socket
      emulator.dropConnections()
      await waitFor(() => t.status().counters.reconnects === 1, { what: 'reconnect' })
      assertTunnelled(proxy, emulator, 2)
      await t.close()
      assert.deepEqual(await running, { reason: 'closed' })
      assert.ok(lines.every((l) => !l.includes(PASSWORD)))
    } finally {
      await proxy.close()
      await emulator.close()
    }
  })
}

test('socks5h:// hands the host name to the proxy', async () => {
  const emulator = await FeishuEmulator.start({ host: 'localhost' })
  const proxy = await startProxy({ kind: 'socks5' })
  try {
    assert.match(emulator.domain, /^http:\/\/localhost:/)
    const { t } = await connect(fastOptions(emulator, { proxy: proxy.url.replace('socks5:', 'socks5h:') }))
    assert.deepEqual(proxy.tunnels, [`localhost:${emulator.port}`, `localhost:${emulator.port}`])
    await t.close()
  } finally {
    await proxy.close()
    await emulator.close()
  }
})

test('proxy: undefined uses HTTP_PROXY (for an http:// domain), read at construction', async () => {
  const emulator = await FeishuEmulator.start()
  const proxy = await startProxy()
  try {
    // HTTPS_PROXY is for https targets: it does not apply to the emulator's http:// domain
    const direct = withProxyEnv({ HTTPS_PROXY: proxy.url }, () => connect(fastOptions(emulator, { proxy: undefined })))
    await (await direct).t.close()
    assert.equal(proxy.connections, 0)

    const viaEnv = withProxyEnv({ HTTP_PROXY: proxy.url }, () => connect(fastOptions(emulator, { proxy: undefined })))
    const { t } = await viaEnv
    assertTunnelled(proxy, emulator)
    await t.close()

    const viaAll = withProxyEnv({ all_proxy: proxy.url }, () => connect(fastOptions(emulator, { proxy: undefined })))
    await (await viaAll).t.close()
    assertTunnelled(proxy, emulator, 2)
  } finally {
    await proxy.close()
    await emulator.close()
  }
})

test('NO_PROXY bypasses the environment proxy (host, host:port, CIDR, *)', async () => {
  const emulator = await FeishuEmulator.start()
  const proxy = await startProxy({ kind: 'socks5' })
  try {
    for (const noProxy of ['127.0.0.1', `127.0.0.1:${emulator.port}`, '10.0.0.0/8,127.0.0.0/8', '*', '.example.com, 127.0.0.1']) {
      const { t } = await withProxyEnv({ ALL_PROXY: proxy.url, NO_PROXY: noProxy }, () => connect(fastOptions(emulator, { proxy: undefined })))
      await t.close()
      assert.equal(proxy.connections, 0, `NO_PROXY=${noProxy}`)
    }
    // a non-matching entry does not bypass
    const { t } = await withProxyEnv({ ALL_PROXY: proxy.url, no_proxy: `127.0.0.1:${emulator.port + 1},example.com` }, () => connect(fastOptions(emulator, { proxy: undefined })))
    await t.close()
    assertTunnelled(proxy, emulator)
  } finally {
    await proxy.close()
    await emulator.close()
  }
})

test('proxy: null connects directly whatever the environment says', async () => {
  const emulator = await FeishuEmulator.start()
  const proxy = await startProxy()
  try {
    const env = { HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url, ALL_PROXY: proxy.url, http_proxy: proxy.url }
    const { t } = await withProxyEnv(env, () => connect(fastOptions(emulator, { proxy: null })))
    await t.close()
    assert.equal(proxy.connections, 0)
    // an explicit proxy wins over NO_PROXY, which is an environment rule
    const { t: t2 } = await withProxyEnv({ NO_PROXY: '*' }, () => connect(fastOptions(emulator, { proxy: proxy.url })))
    await t2.close()
    assertTunnelled(proxy, emulator)
  } finally {
    await proxy.close()
    await emulator.close()
  }
})

const failures = [
  ['refuses (HTTP 403)', { kind: 'http', behaviour: 'refuse' }, null, 'it answered HTTP 403 Forbidden'],
  ['requires credentials (HTTP 407)', { kind: 'http', auth: { user: 'u', pass: 'right' } }, null, 'requires authentication (HTTP 407 Proxy Authentication Required)'],
  ['rejects the credentials (HTTP 407)', { kind: 'http', auth: { user: 'u', pass: 'right' } }, { user: 'u', pass: PASSWORD }, 'rejected the credentials'],
  ['answers garbage (HTTP)', { kind: 'http', behaviour: 'garbage' }, null, 'answered something that is not HTTP: "garbage, not a proxy'],
  ['never answers (HTTP)', { kind: 'http', behaviour: 'silent' }, { user: 'u', pass: PASSWORD }, 'did not open a tunnel to 127.0.0.1:'],
  ['refuses (SOCKS5)', { kind: 'socks5', behaviour: 'refuse' }, null, 'connection not allowed by ruleset'],
  ['requires credentials (SOCKS5)', { kind: 'socks5', auth: { user: 'u', pass: 'right' } }, null, 'requires authentication'],
  ['rejects the credentials (SOCKS5)', { kind: 'socks5', auth: { user: 'u', pass: 'right' } }, { user: 'u', pass: PASSWORD }, 'rejected the username and password'],
  ['answers garbage (SOCKS5)', { kind: 'socks5', behaviour: 'garbage' }, null, 'answered something that is not SOCKS5'],
  ['never answers (SOCKS5)', { kind: 'socks5', behaviour: 'silent' }, null, 'did not open a tunnel'],
]

for (const [name, proxyOptions, creds, said] of failures) {
  test(`a proxy that ${name} gives PROXY_ERROR within the handshake timeout, and is retried`, async () => {
    const emulator = await FeishuEmulator.start()
    const proxy = await startProxy(proxyOptions)
    const errors = []
    const reconnecting = []
    try {
      const t = new FeishuTransport(fastOptions(emulator, {
        proxy: creds ? proxy.urlWith(creds.user, creds.pass) : proxy.url,
        reconnect: { initialDelayMs: 10, maxDelayMs: 20, jitter: 0, maxAttempts: 3 },
        timeouts: { discoveryMs: 5000, handshakeMs: 300 },
        onError: (e) => errors.push(e),
        onReconnecting: (i) => reconnecting.push(i),
      }))
      const t0 = Date.now()
      const err = await t.start().then((r) => assert.fail(`resolved ${JSON.stringify(r)}`), (e) => e)
      const elapsed = Date.now() - t0
      assert.equal(err.code, 'RECONNECT_EXHAUSTED')
      assert.equal(err.cause.code, 'PROXY_ERROR')
      // three attempts, each bounded by the 300 ms handshake timeout at most
      assert.ok(elapsed < 3000, `took ${elapsed} ms`)
      assert.equal(reconnecting.length, 2)
      const proxyErrors = errors.filter((e) => e.code === 'PROXY_ERROR')
      assert.equal(proxyErrors.length, 3)
      for (const e of proxyErrors) {
        assert.equal(e.terminal, false)
        assert.ok(e.message.includes(`127.0.0.1:${proxy.port}`), `names the proxy: ${e.message}`)
        assert.ok(e.message.includes(said), `says what happened: ${e.message}`)
        assert.ok(!e.message.includes(PASSWORD) && !e.message.includes(encodeURIComponent(PASSWORD)), e.message)
      }
      assert.equal(proxy.connections, 3)
      assert.equal(emulator.stats().discoveryCalls, 0)
    } finally {
      await proxy.close()
      await emulator.close()
    }
  })
}

test('a proxy nobody listens on gives PROXY_ERROR naming it', async () => {
  const emulator = await FeishuEmulator.start()
  try {
    const port = await closedPort()
    const t = new FeishuTransport(fastOptions(emulator, { proxy: `socks5h://u:${encodeURIComponent(PASSWORD)}@127.0.0.1:${port}`, reconnect: false }))
    const err = await t.start().then(() => assert.fail('resolved'), (e) => e)
    assert.equal(err.code, 'PROXY_ERROR')
    assert.match(err.message, new RegExp(`socks5h://127\\.0\\.0\\.1:${port} could not be reached`))
    assert.ok(!err.message.includes(PASSWORD))
  } finally {
    await emulator.close()
  }
})

test('a proxy that refuses at first is retried until it lets the transport through', async () => {
  const emulator = await FeishuEmulator.start()
  const proxy = await startProxy({ kind: 'http', refuseFirst: 2 })
  const errors = []
  try {
    const { t } = await connect(fastOptions(emulator, { proxy: proxy.url, onError: (e) => errors.push(e) }))
    assert.deepEqual(errors.map((e) => e.code), ['PROXY_ERROR', 'PROXY_ERROR'])
    assert.equal(proxy.connections, 4, 'two refused, then discovery and the socket')
    assert.equal(t.status().state, 'connected')
    const id = emulator.pushEvent(ev('after-refusals'))
    assert.equal((await emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
    await t.close()
  } finally {
    await proxy.close()
    await emulator.close()
  }
})

test('an unusable proxy option or environment variable is INVALID_CONFIG, without the password', () => {
  const base = { appId: 'cli_a1b2c3d4e5f60718', appSecret: 'x', onEvent: () => {} }
  for (const proxy of ['', '   ', 42, {}, `socks4://u:${PASSWORD}@127.0.0.1:1080`, `ftp://u:${PASSWORD}@h`, 'http://[::1']) {
    assert.throws(() => new FeishuTransport({ ...base, proxy }), (e) => {
      assert.equal(e.code, 'INVALID_CONFIG')
      assert.equal(e.terminal, true)
      assert.ok(!e.message.includes(PASSWORD), e.message)
      return true
    }, `proxy ${JSON.stringify(proxy)}`)
  }
  withProxyEnv({ HTTPS_PROXY: `socks4://u:${PASSWORD}@h:1` }, () => {
    assert.throws(() => new FeishuTransport(base), (e) => {
      assert.equal(e.code, 'INVALID_CONFIG')
      assert.match(e.message, /HTTPS_PROXY/)
      assert.ok(!e.message.includes(PASSWORD), e.message)
      return true
    })
    // it does not apply with proxy: null
    new FeishuTransport({ ...base, proxy: null })
  })
  // every supported form is accepted
  for (const proxy of ['http://p:3128', 'https://p', 'socks5://u:p@p:1080', 'socks5h://p', 'p.corp:3128']) {
    new FeishuTransport({ ...base, proxy })
  }
})
