// Conformance: the official @larksuiteoapi/node-sdk WSClient + EventDispatcher against
// the emulator. If the official client works against it unchanged (connects, pings,
// reassembles fragments, acks, gets re-deliveries, reconnects), the emulator speaks the
// protocol as Feishu does, and tests of our own transport against it mean something.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'

import { FeishuEmulator } from '../emulator.js'

const require = createRequire(import.meta.url)
const Lark = require('@larksuiteoapi/node-sdk')

const WAIT = { timeoutMs: 10_000 }

let emu
let client
/** Every payload the handlers saw, by event type, in order. */
const seen = new Map()
/** How many times the "fail once" handler ran. */
let failOnceCalls = 0
/** The SDK's log lines, printed only if a test fails. */
const sdkLog = []

function record(type, data) {
  if (!seen.has(type)) seen.set(type, [])
  seen.get(type).push(data)
}

/** Resolves when `predicate()` is true, polling (the SDK gives no hook for "handled"). */
async function until(predicate, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}\nSDK log:\n${sdkLog.join('\n')}`)
    }
    await new Promise((r) => setTimeout(r, 10))
  }
}

const cardReply = {
  toast: { type: 'success', content: 'approved' },
  card: { type: 'raw', data: { schema: '2.0', body: { elements: [] } } },
}

before(async () => {
  emu = await FeishuEmulator.start({
    // Reconnect at once after a drop (the SDK waits random(0..ReconnectNonce) s first).
    clientConfig: { reconnectNonce: 0, reconnectInterval: 1 },
    ackDeadlineMs: 3000,
  })
  const logger = Object.fromEntries(
    ['error', 'warn', 'info', 'debug', 'trace'].map((level) => [
      level,
      (...args) => sdkLog.push(`${level}: ${args.map(String).join(' ')}`),
    ]),
  )
  const dispatcher = new Lark.EventDispatcher({}).register({
    'im.message.receive_v1': async (data) => {
      record('im.message.receive_v1', data)
    },
    'card.action.trigger': async (data) => {
      record('card.action.trigger', data)
      return cardReply
    },
    'im.message.reaction.created_v1': async (data) => {
      record('im.message.reaction.created_v1', data)
      failOnceCalls += 1
      if (failOnceCalls === 1) throw new Error('first call fails on purpose')
    },
  })
  let onReady
  const ready = new Promise((resolve) => {
    onReady = resolve
  })
  client = new Lark.WSClient({
    appId: emu.appId,
    appSecret: emu.appSecret,
    domain: emu.domain,
    loggerLevel: Lark.LoggerLevel.error,
    logger,
    onReady,
  })
  client.start({ eventDispatcher: dispatcher })
  // The SDK drops events that arrive before its listener is attached: wait for onReady.
  await ready
})

after(async () => {
  client?.close({ force: true })
  await emu?.close()
})

test('the official client discovers, connects and pings with the service id', async () => {
  await emu.waitForConnections(1, WAIT)
  const [conn] = emu.connections()
  assert.equal(conn.appId, emu.appId)
  await until(() => emu.pings().length > 0, 'a ping')
  const ping = emu.pings()[0]
  assert.equal(ping.service, 33554678)
  assert.equal(ping.connectionId, conn.id)
  const stats = emu.stats()
  assert.ok(stats.discoveryCalls >= 1)
  assert.equal(stats.handshakes, 1)
  assert.equal(stats.badFramesReceived, 0)
})

test('a plain event reaches the handler and is acked with 200', async () => {
  const id = emu.pushSample('message-receive-text')
  const ack = await emu.waitForAck(id, WAIT)
  assert.equal(ack.code, 200)
  assert.equal(ack.delivery, 1)
  assert.equal(ack.eventId, 'c42aaedb8ee7d8464cbbc212d6675dc3')
  assert.equal(ack.data, null)
  // the ack echoes the frame's headers and adds biz_rt
  assert.equal(ack.headers.message_id, id)
  assert.equal(ack.headers.type, 'event')
  assert.ok('biz_rt' in ack.headers)
  const got = seen.get('im.message.receive_v1').at(-1)
  assert.equal(got.event_id, 'c42aaedb8ee7d8464cbbc212d6675dc3')
  assert.equal(got.message.message_id, 'om_ebc9f7e95c50440a8848dbd237e7faf3')
})

test('a 4-fragment event is reassembled, whatever the order', async () => {
  for (const order of ['in-order', 'reverse', 'shuffle']) {
    const before = seen.get('im.message.receive_v1')?.length ?? 0
    const id = emu.pushSample('message-receive-post', { fragments: 4, order })
    const ack = await emu.waitForAck(id, WAIT)
    assert.equal(ack.code, 200, order)
    const list = seen.get('im.message.receive_v1')
    assert.equal(list.length, before + 1, order)
    assert.equal(list.at(-1).message.message_type, 'post')
    assert.equal(ack.headers.sum, '4')
  }
})

test("a card callback's return value comes back as the ack's data", async () => {
  const id = emu.pushSample('card-action-trigger')
  const ack = await emu.waitForAck(id, WAIT)
  assert.equal(ack.code, 200)
  assert.deepEqual(JSON.parse(ack.data), cardReply)
  assert.equal(seen.get('card.action.trigger').length, 1)
})

test('a handler that throws gets a 500 ack, and the re-delivery is acked with 200', async () => {
  const id = emu.pushSample('reaction-created')
  const failed = await emu.waitForAck(id, { ...WAIT, code: 500 })
  assert.equal(failed.delivery, 1)
  const ok = await emu.waitForAck(id, { ...WAIT, code: 200 })
  assert.equal(ok.delivery, 2)
  assert.equal(failOnceCalls, 2)
  assert.equal(emu.stats().redeliveries, 1)
})

test('after the server drops the connection the client reconnects and events flow', async () => {
  const [old] = emu.connections()
  assert.equal(emu.dropConnections(), 1)
  await until(
    () => emu.connections().some((c) => c.id !== old.id),
    'a new connection',
  )
  const [fresh] = emu.connections()
  assert.notEqual(fresh.id, old.id)
  assert.equal(emu.stats().handshakes, 2)
  const id = emu.pushEvent(
    {
      schema: '2.0',
      header: {
        event_id: 'after-reconnect-0001',
        event_type: 'im.message.receive_v1',
        create_time: String(Date.now()),
        token: 't',
        app_id: emu.appId,
        tenant_key: 'tk',
      },
      event: { message: { message_id: 'om_after_reconnect', message_type: 'text', content: '{"text":"hi"}' } },
    },
    { fragments: 2 },
  )
  const ack = await emu.waitForAck(id, WAIT)
  assert.equal(ack.code, 200)
  assert.equal(ack.connectionId, fresh.id)
  assert.equal(seen.get('im.message.receive_v1').at(-1).message.message_id, 'om_after_reconnect')
  await emu.waitForAllAcked(WAIT)
})
