// User callbacks that throw, reject, return garbage or never settle cannot kill the
// process or the loop.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startPair, waitFor } from './helpers.mjs'

const ev = (id) => ({ schema: '2.0', header: { event_id: id, event_type: 'x' }, event: {} })

test('a circular result acks 500; the transport keeps serving', async () => {
  const p = await startPair({ emulator: { maxRedeliveries: 0 }, onEvent: (e) => { if (e.eventId === 'circ') { const o = {}; o.self = o; return o } return 'fine' } })
  try {
    const a = p.emulator.pushEvent(ev('circ'))
    assert.equal((await p.emulator.waitForAck(a, { timeoutMs: 5000 })).code, 500)
    const b = p.emulator.pushEvent(ev('next'))
    const ack = await p.emulator.waitForAck(b, { timeoutMs: 5000 })
    assert.equal(ack.data, '"fine"')
  } finally {
    await p.stop()
  }
})

test('logger, onStatus and every lifecycle callback throwing (or rejecting) changes nothing', async () => {
  const boom = () => { throw new Error('callback boom') }
  const reject = async () => { throw new Error('callback reject') }
  const p = await startPair({
    transport: {
      logLevel: 'debug',
      logger: boom,
      onStatus: reject,
      onReconnecting: boom,
      onReconnected: reject,
      onError: boom,
    },
  })
  try {
    p.emulator.dropConnections()
    await waitFor(() => p.transport.status().counters.reconnects === 1 && p.transport.status().connected, { what: 'reconnect' })
    const id = p.emulator.pushEvent(ev('after'))
    assert.equal((await p.emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
  } finally {
    await p.stop()
  }
})

test('a handler that never settles: the ack waits, a warning comes at 3 s, close() completes after drainMs', async () => {
  const logs = []
  const p = await startPair({
    transport: { logLevel: 'warn', logger: (level, m) => logs.push(`${level} ${m}`) },
    onEvent: () => new Promise(() => {}),
  })
  try {
    const id = p.emulator.pushEvent(ev('stuck'))
    await waitFor(() => logs.some((l) => l.includes('has run for 3000 ms')), { timeoutMs: 6000, what: 'slow-handler warning' })
    assert.equal(p.emulator.acks().filter((a) => a.messageId === id).length, 0)
    const t0 = Date.now()
    await p.transport.close({ drainMs: 100 })
    assert.ok(Date.now() - t0 < 2000)
    assert.deepEqual(await p.running, { reason: 'closed' })
  } finally {
    await p.emulator.close()
  }
})
