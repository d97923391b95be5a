// The batched event path (src/binding/transport.rs EventBridge + index.js #onEvents):
// several events cross to JavaScript in one call and are settled by seq. Handlers of
// every shape (sync, async, thenable, reply, throw) in one burst keep arrival order and
// get the right ack each; ids that need JSON escaping arrive intact.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FeishuTransport, FeishuEmulator } from '../index.js'
import { deferred, fastOptions, waitFor } from './helpers.mjs'

async function start(emulatorOptions, onEvent) {
  const emulator = await FeishuEmulator.start(emulatorOptions)
  const ready = deferred()
  const transport = new FeishuTransport(fastOptions(emulator, { onReady: () => ready.resolve(), onEvent }))
  const running = transport.start()
  running.catch(() => {})
  await ready.promise
  return { emulator, transport, stop: async () => { await transport.close({ force: true }); await emulator.close() } }
}

const payload = (i) => ({ schema: '2.0', header: { event_id: `hp-${i}-${Date.now()}`, event_type: 'im.message.receive_v1' }, event: { i } })

test('a burst of mixed handlers: arrival order, and each event gets its own ack', async () => {
  const order = []
  const thrown = new Set()
  const p = await start({ ackDeadlineMs: 400, maxRedeliveries: 3 }, (e) => {
    const i = e.payload.event.i
    order.push(i)
    switch (i % 6) {
      case 0: return undefined
      case 1: return (async () => {})()
      case 2: return { sync: i }
      case 3:
        if (!thrown.has(i)) { thrown.add(i); throw new Error(`boom ${i}`) }
        return { retried: i }
      case 4: return { then: (resolve) => setTimeout(() => resolve({ thenable: i }), 5) }
      default:
        if (!thrown.has(i)) { thrown.add(i); return Promise.reject('plain string') }
        return null
    }
  })
  try {
    const n = 60
    const ids = []
    for (let i = 0; i < n; i++) ids.push(p.emulator.pushEvent(payload(i)))
    await p.emulator.waitForAllAcked({ timeoutMs: 10_000 })
    // First deliveries reach the handler in push order.
    assert.deepEqual(order.slice(0, n), Array.from({ length: n }, (_, i) => i))
    const acks = p.emulator.acks()
    for (let i = 0; i < n; i++) {
      const mine = acks.filter((a) => a.messageId === ids[i])
      const first = mine.find((a) => a.delivery === 1)
      const ok = mine.find((a) => a.code === 200)
      switch (i % 6) {
        case 0: case 1:
          assert.equal(first.code, 200); assert.equal(first.data, null); break
        case 2:
          assert.deepEqual(JSON.parse(first.data), { sync: i }); break
        case 3:
          assert.equal(first.code, 500); assert.deepEqual(JSON.parse(ok.data), { retried: i }); break
        case 4:
          assert.deepEqual(JSON.parse(first.data), { thenable: i }); break
        default:
          assert.equal(first.code, 500); assert.equal(ok.data, null)
      }
    }
    assert.equal(p.transport.status().counters.failedAcks, 20)
  } finally {
    await p.stop()
  }
})

test('message and trace ids that need JSON escaping arrive intact', async () => {
  const seen = []
  const p = await start({}, (e) => { seen.push(e) })
  try {
    const messageId = 'om_"quoted"\\back\u0001ctl\u2028é'
    const traceId = 'tr_"x"\\\n'
    const id = p.emulator.pushEvent(payload('esc'), { messageId, traceId })
    assert.equal(id, messageId)
    assert.equal((await p.emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
    await waitFor(() => seen.length === 1)
    assert.equal(seen[0].messageId, messageId)
    assert.equal(seen[0].traceId, traceId)
  } finally {
    await p.stop()
  }
})
