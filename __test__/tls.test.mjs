// TLS end to end: the emulator serves https/wss with a certificate from a CA generated at
// test time; the transport connects when given that CA (`tls.caPem`) and fails with
// TLS_ERROR, naming the host and why, when not. Verification cannot be turned off.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FeishuTransport, FeishuEmulator } from '../index.js'
import { deferred, fastOptions, waitFor } from './helpers.mjs'
import { startProxy, withProxyEnv } from './support/proxies.mjs'

const ev = (id) => ({ schema: '2.0', header: { event_id: id, event_type: 'im.message.receive_v1' }, event: { n: id } })

async function tlsEmulator(certs = FeishuEmulator.generateTestCertificates()) {
  const emulator = await FeishuEmulator.start({ tls: { certPem: certs.certPem, keyPem: certs.keyPem } })
  return { emulator, certs }
}

async function connect(options) {
  const ready = deferred()
  const t = new FeishuTransport({ ...options, onReady: ready.resolve })
  const running = t.start()
  running.catch(() => {})
  await Promise.race([ready.promise, running.then((r) => { throw new Error(`settled before ready: ${JSON.stringify(r)}`) }, (e) => { throw e })])
  return { t, running }
}

test('generateTestCertificates makes a CA and a server certificate for localhost', () => {
  const c = FeishuEmulator.generateTestCertificates()
  assert.match(c.caPem, /^-----BEGIN CERTIFICATE-----/)
  assert.match(c.certPem, /^-----BEGIN CERTIFICATE-----/)
  assert.match(c.keyPem, /^-----BEGIN PRIVATE KEY-----/)
  assert.notEqual(c.caPem, FeishuEmulator.generateTestCertificates().caPem, 'fresh every call')
})

for (const [name, toCa] of [['a PEM string', (pem) => pem], ['a Buffer', (pem) => Buffer.from(pem)]]) {
  test(`connects over https/wss when tls.caPem (${name}) trusts the emulator's CA, and events flow`, async () => {
    const { emulator, certs } = await tlsEmulator()
    try {
      assert.match(emulator.domain, /^https:\/\/127\.0\.0\.1:\d+$/)
      const { t, running } = await connect(fastOptions(emulator, { tls: { caPem: toCa(certs.caPem) } }))
      const id = emulator.pushEvent(ev('over-tls'))
      assert.equal((await emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
      assert.equal(emulator.stats().tlsHandshakeFailures, 0)
      await t.close()
      assert.deepEqual(await running, { reason: 'closed' })
    } finally {
      await emulator.close()
    }
  })
}

test('without the CA (or with another one) the connection fails with TLS_ERROR naming the host and why', async () => {
  const { emulator } = await tlsEmulator()
  try {
    const other = FeishuEmulator.generateTestCertificates()
    for (const tls of [undefined, { caPem: other.caPem }]) {
      const errors = []
      const t = new FeishuTransport(fastOptions(emulator, { tls, reconnect: false, onError: (e) => errors.push(e) }))
      const err = await t.start().then(() => assert.fail('resolved'), (e) => e)
      assert.equal(err.code, 'TLS_ERROR')
      assert.equal(err.terminal, false, 'retryable: a CA may be fixed on the server side')
      assert.ok(err.message.includes(`TLS with 127.0.0.1:${emulator.port} failed`), err.message)
      // the other CA has the same name: rustls finds it and then the signature fails
      const why = tls ? 'does not verify against the trusted authority' : 'not issued by a trusted authority'
      assert.ok(err.message.includes(why), err.message)
      assert.deepEqual(errors.map((e) => e.code), ['TLS_ERROR'])
    }
    assert.equal(emulator.stats().discoveryCalls, 0, 'nothing was sent over an unverified connection')
    // The server learns of the refusal when the client's alert reaches it, which may be
    // after the client has already settled.
    await waitFor(() => emulator.stats().tlsHandshakeFailures >= 2, { what: 'two TLS failures seen by the server' })
  } finally {
    await emulator.close()
  }
})

test('a TLS failure is retried like any recoverable error', async () => {
  const { emulator } = await tlsEmulator()
  const reconnecting = []
  try {
    const t = new FeishuTransport(fastOptions(emulator, {
      reconnect: { initialDelayMs: 10, maxDelayMs: 20, jitter: 0, maxAttempts: 3 },
      onReconnecting: (i) => reconnecting.push(i),
    }))
    const err = await t.start().then(() => assert.fail('resolved'), (e) => e)
    assert.equal(err.code, 'RECONNECT_EXHAUSTED')
    assert.equal(err.cause.code, 'TLS_ERROR')
    assert.deepEqual(reconnecting.map((r) => r.error.code), ['TLS_ERROR', 'TLS_ERROR'])
  } finally {
    await emulator.close()
  }
})

test('https through proxies: HTTPS_PROXY from the environment, and a TLS proxy trusted through caPem', async () => {
  const { emulator, certs } = await tlsEmulator()
  const plain = await startProxy({ kind: 'http' })
  const tlsProxy = await startProxy({ kind: 'https', tls: { certPem: certs.certPem, keyPem: certs.keyPem }, auth: { user: 'u', pass: 'p' } })
  try {
    // HTTP_PROXY does not apply to an https:// domain; HTTPS_PROXY does
    const a = await withProxyEnv({ HTTP_PROXY: plain.url }, () => connect(fastOptions(emulator, { proxy: undefined, tls: { caPem: certs.caPem } })))
    await a.t.close()
    assert.equal(plain.connections, 0)
    const b = await withProxyEnv({ HTTPS_PROXY: plain.url }, () => connect(fastOptions(emulator, { proxy: undefined, tls: { caPem: certs.caPem } })))
    await b.t.close()
    assert.equal(plain.tunnels.length, 2)

    // TLS to the proxy, and TLS to Feishu inside the tunnel, both verified with caPem
    const c = await connect(fastOptions(emulator, { proxy: tlsProxy.urlWith('u', 'p'), tls: { caPem: certs.caPem } }))
    const id = emulator.pushEvent(ev('tls-in-tls'))
    assert.equal((await emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
    await c.t.close()
    assert.deepEqual(tlsProxy.tunnels, [`127.0.0.1:${emulator.port}`, `127.0.0.1:${emulator.port}`])
  } finally {
    await plain.close()
    await tlsProxy.close()
    await emulator.close()
  }
})

test('tls options are checked; certificate verification cannot be turned off', () => {
  const base = { appId: 'cli_a1b2c3d4e5f60718', appSecret: 'x', onEvent: () => {} }
  const bad = [
    [{ rejectUnauthorized: false }, /always verified/],
    [{ insecure: true }, /always verified/],
    [{ ca: 'x' }, /not a known option/],
    [{ caPem: 42 }, /PEM string or a Buffer/],
    [{ caPem: 'not a certificate' }, /tls\.caPem holds no PEM certificate/],
    [{ caPem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }, /tls\.caPem/],
    [{ systemRoots: 'yes' }, /systemRoots must be a boolean/],
  ]
  for (const [tls, message] of bad) {
    assert.throws(() => new FeishuTransport({ ...base, tls }), (e) => e.code === 'INVALID_CONFIG' && e.terminal && message.test(e.message), JSON.stringify(tls))
  }
  assert.throws(() => new FeishuTransport({ ...base, tls: null }), /tls must be an object/)
  const certs = FeishuEmulator.generateTestCertificates()
  new FeishuTransport({ ...base, tls: { caPem: certs.caPem + certs.caPem } })
  new FeishuTransport({ ...base, tls: {} })
  // The operating system's store: constructs where the machine has one, and otherwise
  // says so by name.
  try {
    new FeishuTransport({ ...base, tls: { systemRoots: true } })
  } catch (e) {
    assert.equal(e.code, 'INVALID_CONFIG')
    assert.match(e.message, /tls\.systemRoots/)
  }
})

test('the emulator refuses a certificate it cannot serve', async () => {
  const c = FeishuEmulator.generateTestCertificates()
  const other = FeishuEmulator.generateTestCertificates()
  await assert.rejects(FeishuEmulator.start({ tls: { certPem: c.certPem, keyPem: other.keyPem } }), /certificate and key/)
  await assert.rejects(FeishuEmulator.start({ tls: { certPem: 'x', keyPem: c.keyPem } }), /tls\.certPem/)
})
