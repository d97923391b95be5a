// The compat WSClient's own contract: secrets stay out of what it prints, start() after
// close() starts again, loggerLevel filters its lines, agents never make it throw, the
// SDK's option shapes are accepted; and the transport's `discover` hook it is built on.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import util from 'node:util'
import { FeishuTransport, FeishuEmulator } from '../index.js'
import { WSClient, LoggerLevel } from '../compat.js'
import { deferred, fastOptions, waitFor } from './helpers.mjs'

const quietLogger = () => {
  const lines = []
  const logger = Object.fromEntries(['error', 'warn', 'info', 'debug', 'trace'].map((l) => [l, (...m) => lines.push(`${l} ${m.join(' ')}`)]))
  return { lines, logger }
}
const dispatcher = { invoke: async () => undefined }

test('compat: console.log and JSON.stringify of a client never show a proxy password', () => {
  const cases = [
    { proxy: 'http://alice:PROXYPASS%40x@127.0.0.1:3128' },
    { agent: { proxy: new URL('http://alice:PROXYPASS@127.0.0.1:3128') } },
    { agent: { proxy: { host: '127.0.0.1', port: 1080, type: 5, userId: 'alice', password: 'PROXYPASS' } } },
    { agent: { proxy: { protocol: 'http:', hostname: '127.0.0.1', port: 3128, auth: 'alice:PROXYPASS' } } },
    { proxy: 'http://alice:PROXY/PASS@proxy:3128' },
  ]
  for (const extra of cases) {
    const client = new WSClient({ appId: 'cli_a1b2c3d4e5f60718', appSecret: 'APPSECRET-xyz', ...extra })
    for (const shown of [util.inspect(client, { depth: 10, showHidden: true }), JSON.stringify(client), util.format('%o', client)]) {
      assert.ok(!shown.includes('PROXYPASS') && !shown.includes('PROXY/PASS'), shown)
      assert.ok(!shown.includes('APPSECRET'), shown)
    }
    assert.match(JSON.stringify(client), /"proxy":"(socks5h|http):\/\/\[redacted\]@127\.0\.0\.1|"proxy":"\[redacted\]"/)
    assert.deepEqual(Object.keys(client), [], 'no public state')
  }
})

test('compat: an agent whose proxy cannot be read never throws; the environment is used, said once at debug level', () => {
  for (const agent of [{}, new (class OpaqueAgent {})(), { get proxy() { throw new Error('boom') } }, { getProxyForUrl: () => Promise.resolve('http://x:1') }]) {
    const { lines, logger } = quietLogger()
    const client = new WSClient({ appId: 'cli_a1b2c3d4e5f60718', appSecret: 's3cret', agent, logger, loggerLevel: LoggerLevel.debug })
    assert.equal(lines.filter((l) => l.includes("the agent's proxy could not be read")).length, 1, lines.join('\n'))
    assert.ok(lines[0].startsWith('debug [ws] '))
    assert.equal(client.toJSON().proxy, undefined)
  }
  // Read from proxy-agent's getProxyForUrl when it answers synchronously.
  const client = new WSClient({ appId: 'cli_a1b2c3d4e5f60718', appSecret: 's3cret', agent: { getProxyForUrl: () => 'http://127.0.0.1:3128' } })
  assert.equal(client.toJSON().proxy, 'http://127.0.0.1:3128/')
  // At info level (OpenClaw's) the debug line is not written.
  const { lines, logger } = quietLogger()
  void new WSClient({ appId: 'cli_a1b2c3d4e5f60718', appSecret: 's3cret', agent: {}, logger, loggerLevel: LoggerLevel.info })
  assert.deepEqual(lines, [])
})

test("compat: loggerLevel filters compat's own lines", () => {
  const at = (loggerLevel) => {
    const { lines, logger } = quietLogger()
    const client = new WSClient({ appId: 'cli_a1b2c3d4e5f60718', appSecret: 's3cret', logger, loggerLevel, httpInstance: { request: async () => ({}) } })
    client.close()
    return lines
  }
  assert.deepEqual(at(LoggerLevel.error), [])
  assert.deepEqual(at(LoggerLevel.info), ['info [ws] ws client closed manually'])
})

test("compat: the SDK's option shapes are accepted; start() rejects without appSecret", async () => {
  const client = new WSClient({ appId: 'cli_a1b2c3d4e5f60718' })
  await assert.rejects(client.start({ eventDispatcher: dispatcher }), (e) => e.code === 'INVALID_CONFIG' && /appSecret is required/.test(e.message))
  const keyless = new WSClient({ appId: 'cli_a1b2c3d4e5f60718', clientAssertionProvider: { retrieveToken: async () => ({ value: 'x' }) } })
  await assert.rejects(keyless.start({ eventDispatcher: dispatcher }), /does not support clientAssertionProvider/)
  assert.equal(client.getConnectionStatus().state, 'idle')
})

test('compat: start() right after close() starts again and connects', async () => {
  const emulator = await FeishuEmulator.start()
  const { logger } = quietLogger()
  let readies = 0
  const ready = [deferred(), deferred()]
  const client = new WSClient({
    appId: emulator.appId,
    appSecret: emulator.appSecret,
    domain: emulator.domain,
    proxy: null,
    logger,
    onReady: () => ready[readies++]?.resolve(),
  })
  try {
    await client.start({ eventDispatcher: dispatcher })
    await ready[0].promise
    client.close()
    await client.start({ eventDispatcher: dispatcher })
    await ready[1].promise
    assert.equal(client.getConnectionStatus().state, 'connected')
    await waitFor(() => emulator.connections().length === 1, { what: 'one live connection' })
    const id = emulator.pushSample('message-receive-text')
    assert.equal((await emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
  } finally {
    client.close({ force: true })
    await emulator.close()
  }
})

test('discover: the hook gets the native request and its answer is used; a failing hook is a recoverable DISCOVERY_FAILED without the secret', async () => {
  const emulator = await FeishuEmulator.start()
  try {
    const requests = []
    const ready = deferred()
    const t = new FeishuTransport(fastOptions(emulator, {
      onReady: ready.resolve,
      discover: async (request) => {
        requests.push(request)
        const r = await fetch(request.url, { method: request.method, headers: request.headers, body: request.body })
        return r.json()
      },
    }))
    const running = t.start()
    await ready.promise
    assert.equal(requests[0].url, `${emulator.domain}/callback/ws/endpoint`)
    assert.equal(requests[0].method, 'POST')
    assert.equal(requests[0].timeoutMs, 2000)
    assert.equal(JSON.parse(requests[0].body).AppID, emulator.appId)
    assert.match(requests[0].headers['User-Agent'], /^feishu-transport\//)
    assert.equal(emulator.stats().discoveryCalls, 1)
    await t.close()
    assert.deepEqual(await running, { reason: 'closed' })

    for (const [discover, want] of [
      [async () => { throw new Error(`upstream said no to ${emulator.appSecret}`) }, /discover option failed: upstream said no to \[redacted\]/],
      [() => { throw new Error('sync throw') }, /sync throw/],
      [async () => 42, /must resolve to the discovery response JSON/],
      [async () => 'not json', /not a JSON object/],
    ]) {
      const errors = []
      const u = new FeishuTransport(fastOptions(emulator, { discover, reconnect: { initialDelayMs: 20, maxDelayMs: 20, jitter: 0, maxAttempts: 2 }, onError: (e) => errors.push(e) }))
      await assert.rejects(u.start(), (e) => e.code === 'RECONNECT_EXHAUSTED')
      assert.equal(errors[0].code, 'DISCOVERY_FAILED')
      assert.equal(errors[0].terminal, false)
      assert.match(errors[0].message, want)
      for (const e of errors) assert.ok(!JSON.stringify({ m: e.message, c: e.cause && e.cause.message }).includes(emulator.appSecret))
    }
    assert.throws(() => new FeishuTransport(fastOptions(emulator, { discover: 'yes' })), (e) => e.code === 'INVALID_CONFIG' && /discover must be a function/.test(e.message))
  } finally {
    await emulator.close()
  }
})
