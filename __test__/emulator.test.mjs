// The emulator's JS API: start on port 0, round trips through every kind of method,
// close. The protocol itself is covered by the Rust tests and by the conformance test
// with the official SDK.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'

import { FeishuEmulator } from '../emulator.js'

const require = createRequire(import.meta.url)
// `ws` comes with the official SDK (a devDependency); used here for raw handshakes.
const WebSocket = require('ws')

async function discover(emu, body = { AppID: emu.appId, AppSecret: emu.appSecret }) {
  const res = await fetch(`${emu.domain}/callback/ws/endpoint`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', locale: 'zh' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
  const text = await res.text()
  let json = null
  try {
    json = JSON.parse(text)
  } catch {}
  return { status: res.status, text, json }
}

/** Opens a WebSocket: resolves with the socket, or with the refusal's status and headers. */
function handshake(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    ws.on('open', () => resolve({ ws }))
    ws.on('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode, headers: res.headers })
      ws.terminate()
    })
    ws.on('error', (e) => {
      if (!/Unexpected server response/.test(e.message)) reject(e)
    })
  })
}

test('start, getters, samples', async () => {
  const emu = await FeishuEmulator.start()
  try {
    assert.match(emu.domain, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.equal(emu.domain, `http://127.0.0.1:${emu.port}`)
    assert.equal(emu.appId, 'cli_a1b2c3d4e5f60718')
    assert.equal(emu.appSecret, 'emulator-secret')
    const names = FeishuEmulator.sampleNames()
    assert.ok(names.includes('message-receive-text'))
    assert.ok(names.includes('card-action-trigger'))
    assert.ok(!names.includes('card-action-reply'))
    const samples = FeishuEmulator.samples()
    assert.deepEqual(Object.keys(samples).sort(), [...names].sort())
    assert.equal(samples['message-receive-text'].header.event_type, 'im.message.receive_v1')
    assert.deepEqual(emu.clientConfig(), {
      pingInterval: 120,
      reconnectCount: -1,
      reconnectInterval: 120,
      reconnectNonce: 30,
    })
    assert.equal(emu.stats().pushed, 0)
  } finally {
    await emu.close()
  }
})

test('options: apps, client config, service id', async () => {
  const emu = await FeishuEmulator.start({
    appId: 'cli_0123456789abcdef',
    appSecret: 's3cret',
    clientConfig: { pingInterval: 5 },
    serviceId: 7,
    port: 0,
  })
  try {
    assert.equal(emu.appId, 'cli_0123456789abcdef')
    const ok = await discover(emu)
    assert.equal(ok.json.code, 0)
    assert.match(ok.json.data.URL, /service_id=7&/)
    assert.deepEqual(ok.json.data.ClientConfig, {
      PingInterval: 5,
      ReconnectCount: -1,
      ReconnectInterval: 120,
      ReconnectNonce: 30,
    })
    const bad = await discover(emu, { AppID: 'cli_0123456789abcdef', AppSecret: 'nope' })
    assert.equal(bad.status, 200)
    assert.equal(bad.json.code, 514)
    const unknown = await discover(emu, { AppID: 'cli_ffffffffffffffff', AppSecret: 'x' })
    assert.equal(unknown.json.code, 1000040346)
    assert.equal((await discover(emu, '{oops')).status, 400)
    emu.setClientConfig({ reconnectNonce: 0 })
    assert.equal(emu.clientConfig().reconnectNonce, 0)
    assert.equal(emu.clientConfig().pingInterval, 5)
  } finally {
    await emu.close()
  }
})

test('pushes queue until a connection exists; payload kinds; bad options throw', async () => {
  const emu = await FeishuEmulator.start()
  try {
    const a = emu.pushEvent({ schema: '2.0', header: { event_id: 'e-object' }, event: {} })
    const b = emu.pushEvent('{"uuid":"u-string"}', { messageId: 'my-id', traceId: 't-1' })
    const c = emu.pushEvent(Buffer.from('{"header":{"event_id":"e-buffer"}}'), { fragments: 3, order: 'shuffle' })
    const d = emu.pushSample('bot-menu', { type: 'card' })
    assert.equal(typeof a, 'string')
    assert.equal(b, 'my-id')
    assert.notEqual(a, c)
    assert.equal(typeof d, 'string')
    const s = emu.stats()
    assert.equal(s.pushed, 3) // the card is not tracked
    assert.equal(s.pending, 3)
    assert.equal(s.queued, 4)
    assert.throws(() => emu.pushEvent('{}', { order: 'sideways' }), /sideways/)
    assert.throws(() => emu.pushSample('no-such-sample'), /no-such-sample/)
    await assert.rejects(emu.waitForAck(a, { timeoutMs: 50 }), (e) => e.message.includes(a))
    await assert.rejects(emu.waitForAllAcked({ timeoutMs: 50 }), /3 of 3/)
    await assert.rejects(emu.waitForConnections(1, { timeoutMs: 50 }), /0 of 1/)
    assert.deepEqual(emu.acks(), [])
    assert.deepEqual(emu.connections(), [])
    assert.deepEqual(emu.pings(), [])
  } finally {
    await emu.close()
  }
})

test('handshakes: single-use tickets, injected rejections, faults', async () => {
  const emu = await FeishuEmulator.start({ maxConnectionsPerApp: 1 })
  try {
    const { json } = await discover(emu)
    const first = await handshake(json.data.URL)
    assert.ok(first.ws)
    await emu.waitForConnections(1, { timeoutMs: 5000, appId: emu.appId })
    const [conn] = emu.connections()
    assert.equal(conn.stalled, false)
    assert.match(json.data.URL, new RegExp(`device_id=${conn.id}&`))

    const reused = await handshake(json.data.URL)
    assert.equal(reused.headers['handshake-status'], '514')
    assert.equal(reused.headers['handshake-msg'], 'invalid ticket')

    const limited = await handshake((await discover(emu)).json.data.URL)
    assert.equal(limited.headers['handshake-autherrcode'], '1000040350')

    assert.equal(emu.stall(), 1)
    assert.equal(emu.connections()[0].stalled, true)
    const closed = new Promise((resolve) => first.ws.on('close', resolve))
    assert.equal(emu.dropConnections(conn.id, false), 1)
    await closed

    emu.rejectHandshakes({ httpStatus: 403, handshakeStatus: 403, msg: 'forbidden' })
    const rejected = await handshake((await discover(emu)).json.data.URL)
    assert.equal(rejected.status, 403)
    assert.equal(rejected.headers['handshake-msg'], 'forbidden')

    emu.failDiscovery({ kind: 'code', code: 1, msg: 'system busy' })
    emu.failDiscovery({ kind: 'http-status', status: 502 })
    emu.failDiscovery({ kind: 'body', body: 'not json' })
    emu.failDiscovery({ kind: 'url', url: '' })
    assert.equal((await discover(emu)).json.code, 1)
    assert.equal((await discover(emu)).status, 502)
    assert.equal((await discover(emu)).text, 'not json')
    assert.equal((await discover(emu)).json.data.URL, '')
    assert.throws(() => emu.failDiscovery({ kind: 'explode' }), /explode/)

    emu.hangHandshakes(2)
    emu.acceptAndClose()
    emu.clearFaults()
    const again = await handshake((await discover(emu)).json.data.URL)
    assert.ok(again.ws)
    await emu.waitForConnections(1)
    const [c2] = emu.connections()
    assert.equal(emu.sendText('hello', c2.id), 1)
    assert.equal(emu.sendRaw(Buffer.from([1, 2, 3])), 1)
    assert.equal(emu.sendFrame({ method: 0, headers: [{ key: 'type', value: 'pong' }], payload: 'garbage' }), 1)
    again.ws.terminate()
    const s = emu.stats()
    assert.equal(s.handshakes, 2)
    assert.equal(s.handshakesRejected, 3)
    assert.equal(s.discoveryFaults, 4)
  } finally {
    await emu.close()
  }
})

test('close is idempotent and frees the port', async () => {
  const emu = await FeishuEmulator.start()
  const { domain } = emu
  await Promise.all([emu.close(), emu.close()])
  await emu.close()
  await assert.rejects(fetch(`${domain}/callback/ws/endpoint`, { method: 'POST', body: '{}' }))
})
