// OpenClaw's contract (README "OpenClaw and other SDK users"), against the emulator with a
// real Lark EventDispatcher, through both the compat WSClient and the native API.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import Lark from '@larksuiteoapi/node-sdk'
import { FeishuTransport, FeishuEmulator } from '../index.js'
import { WSClient, Domain, LoggerLevel } from '../compat.js'
import { deferred, fastOptions, waitFor } from './helpers.mjs'

const samples = FeishuEmulator.samples()
const reply = JSON.parse(readFileSync(new URL('../fixtures/events/card-action-reply.json', import.meta.url), 'utf8'))
const EXHAUSTED_RE = /^WebSocket reconnect exhausted after \d+ attempts?/

/** A dispatcher like OpenClaw's: message and card handlers, through the real SDK class. */
function makeDispatcher({ onMessage } = {}) {
  const received = []
  const dispatcher = new Lark.EventDispatcher({ loggerLevel: Lark.LoggerLevel.error }).register({
    'im.message.receive_v1': async (data) => {
      received.push(data)
      if (onMessage) await onMessage(data)
    },
    'card.action.trigger': async () => reply,
  })
  return { dispatcher, received }
}

/** Starts one client of the given kind; returns its pieces and a terminator like OpenClaw's. */
async function startClient(kind, emulator, dispatcher, extra = {}) {
  const ready = deferred()
  const logs = []
  if (kind === 'compat') {
    const client = new WSClient({
      appId: emulator.appId,
      appSecret: emulator.appSecret,
      domain: emulator.domain,
      loggerLevel: LoggerLevel.info,
      logger: Object.fromEntries(['error', 'warn', 'info', 'debug', 'trace'].map((l) => [l, (...m) => logs.push(m.join(' '))])),
      onReady: ready.resolve,
      ...extra,
    })
    await client.start({ eventDispatcher: dispatcher })
    return { client, ready: ready.promise, logs, terminate: () => client.transport.dropConnection('durable admission failed'), stop: () => client.close({ force: true }) }
  }
  const ac = new AbortController()
  const transport = new FeishuTransport(fastOptions(emulator, {
    logLevel: 'info',
    logger: (level, m) => logs.push(`${level} ${m}`),
    onEvent: (e) => dispatcher.invoke(e.payload, { needCheck: false }),
    onReady: ready.resolve,
    ...extra,
  }))
  const running = transport.start({ signal: ac.signal })
  running.catch(() => {})
  return { transport, running, ready: ready.promise, logs, terminate: () => transport.dropConnection('durable admission failed'), stop: () => ac.abort(), ac }
}

for (const kind of ['compat', 'native']) {
  test(`${kind}: the ack is sent only after the handler has finished`, async () => {
    const emulator = await FeishuEmulator.start()
    const release = deferred()
    const entered = deferred()
    const { dispatcher, received } = makeDispatcher({ onMessage: async () => { entered.resolve(); await release.promise } })
    const c = await startClient(kind, emulator, dispatcher)
    try {
      await c.ready
      const id = emulator.pushSample('message-receive-text')
      await entered.promise
      assert.equal(emulator.acks().length, 0, 'no ack while the handler runs')
      release.resolve()
      const ack = await emulator.waitForAck(id, { timeoutMs: 5000 })
      assert.equal(ack.code, 200)
      // the SDK flattens header + event into the handler's argument
      assert.equal(received[0].event_type, 'im.message.receive_v1')
      assert.equal(received[0].message.message_id, samples['message-receive-text'].event.message.message_id)
    } finally {
      release.resolve()
      await c.stop()
      await emulator.close()
    }
  })

  test(`${kind}: the card handler's reply reaches Feishu as base64 data`, async () => {
    const emulator = await FeishuEmulator.start()
    const { dispatcher } = makeDispatcher()
    const c = await startClient(kind, emulator, dispatcher)
    try {
      await c.ready
      const id = emulator.pushSample('card-action-trigger')
      const ack = await emulator.waitForAck(id, { timeoutMs: 5000 })
      assert.equal(ack.code, 200)
      assert.deepEqual(JSON.parse(ack.data), reply)
    } finally {
      await c.stop()
      await emulator.close()
    }
  })

  test(`${kind}: the socket terminator leaves the event unacked; its re-delivery is handled exactly once`, async () => {
    const emulator = await FeishuEmulator.start({ ackDeadlineMs: 300 })
    let admissions = 0
    let c
    // durable ingress: the first admission fails, terminates the socket and rethrows
    const { dispatcher, received } = makeDispatcher({
      onMessage: async () => {
        if (++admissions === 1) {
          c.terminate()
          throw new Error('admission failed')
        }
      },
    })
    c = await startClient(kind, emulator, dispatcher)
    try {
      await c.ready
      const id = emulator.pushSample('message-receive-text')
      const ack = await emulator.waitForAck(id, { timeoutMs: 5000, code: 200 })
      assert.equal(ack.delivery, 2)
      assert.ok(emulator.acks().every((a) => a.code === 200), 'the failed admission sent no ack')
      assert.equal(admissions, 2)
      assert.equal(received.length, 2)
      const status = kind === 'compat' ? c.client.transport.status() : c.transport.status()
      assert.equal(status.counters.reconnects, 1)
    } finally {
      await c.stop()
      await emulator.close()
    }
  })
}

test('compat: a terminal auth failure reaches onError with the exhausted-retries message', async () => {
  const emulator = await FeishuEmulator.start()
  const errors = []
  const failed = deferred()
  const client = new WSClient({
    appId: emulator.appId,
    appSecret: 'wrong-secret',
    domain: emulator.domain,
    loggerLevel: LoggerLevel.error,
    logger: { error() {}, warn() {}, info() {}, debug() {}, trace() {} },
    onError: (e) => { errors.push(e); failed.resolve() },
  })
  try {
    await client.start({ eventDispatcher: makeDispatcher().dispatcher })
    await failed.promise
    assert.equal(errors.length, 1)
    assert.match(errors[0].message, EXHAUSTED_RE)
    assert.match(errors[0].message, /AUTH_FAILED/)
    assert.ok(!errors[0].message.includes('wrong-secret'))
    assert.equal(client.getConnectionStatus().state, 'failed')
  } finally {
    client.close()
    await emulator.close()
  }
})

test('compat: Domain values, close() is silent, status and reconnect info', async () => {
  assert.equal(Domain.Feishu, 0)
  assert.equal(Domain.Lark, 1)
  const emulator = await FeishuEmulator.start()
  const errors = []
  const c = await startClient('compat', emulator, makeDispatcher().dispatcher, { onError: (e) => errors.push(e) })
  try {
    await c.ready
    assert.equal(c.client.getConnectionStatus().state, 'connected')
    assert.ok(c.client.getReconnectInfo().lastConnectTime > 0)
    c.client.close()
    await waitFor(() => emulator.connections().length === 0, { what: 'socket closed' })
    assert.deepEqual(errors, [])
    // An agent whose proxy cannot be read never throws (the environment's proxy is used).
    assert.doesNotThrow(() => new WSClient({ appId: 'x', appSecret: 'y', agent: {} }))
  } finally {
    await emulator.close()
  }
})

test('native: abort stops everything and the logs are single-line and redacted', async () => {
  const emulator = await FeishuEmulator.start({ ackDeadlineMs: 300 })
  const { dispatcher } = makeDispatcher({
    onMessage: async () => { throw new Error('connect failed\nAuthorization: Bearer token_abc appSecret=secret_abc') },
  })
  const c = await startClient('native', emulator, dispatcher)
  try {
    await c.ready
    const id = emulator.pushSample('message-receive-text')
    await emulator.waitForAck(id, { timeoutMs: 5000, code: 500 })
    c.ac.abort()
    assert.deepEqual(await c.running, { reason: 'aborted' })
    await waitFor(() => emulator.connections().length === 0, { what: 'socket closed' })
    const failure = c.logs.find((l) => l.includes('connect failed'))
    assert.ok(failure, c.logs.join('\n'))
    assert.ok(!failure.includes('\n'))
    assert.match(failure, /Bearer \[redacted\]/)
    assert.match(failure, /appSecret=\[redacted\]/)
    for (const line of c.logs) {
      assert.ok(!line.includes('token_abc') && !line.includes('secret_abc') && !line.includes(emulator.appSecret), line)
      assert.ok(line.length <= 520)
    }
  } finally {
    await emulator.close()
  }
})
