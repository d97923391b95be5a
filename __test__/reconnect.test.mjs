// After a drop the transport reconnects through the backoff and events flow again;
// failed discovery is retried.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FeishuTransport, FeishuEmulator } from '../index.js'
import { deferred, fastOptions, startPair, waitFor } from './helpers.mjs'

const ev = (id) => ({ schema: '2.0', header: { event_id: id, event_type: 'im.message.receive_v1' }, event: { n: id } })

for (const closeFrame of [true, false]) {
  test(`reconnects after the server drops the socket (${closeFrame ? 'with' : 'without'} a close frame) and events flow again`, async () => {
    const reconnecting = []
    let reconnected = 0
    const p = await startPair({
      transport: {
        onReconnecting: (i) => reconnecting.push(i),
        onReconnected: () => { reconnected++ },
      },
    })
    try {
      const first = p.transport.status().connectionId
      p.emulator.dropConnections(null, closeFrame)
      await waitFor(() => reconnected === 1, { what: 'onReconnected' })
      assert.equal(reconnecting.length, 1)
      assert.equal(reconnecting[0].attempt, 1)
      assert.equal(reconnecting[0].error.code, 'DISCONNECTED')
      assert.ok(reconnecting[0].delayMs <= 20)
      const s = p.transport.status()
      assert.equal(s.state, 'connected')
      assert.notEqual(s.connectionId, first)
      assert.equal(s.counters.reconnects, 1)
      assert.equal(p.emulator.stats().discoveryCalls, 2, 'a fresh URL for every connect')
      const id = p.emulator.pushEvent(ev('after-drop'))
      assert.equal((await p.emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
    } finally {
      await p.stop()
    }
  })
}

for (const fault of [{ kind: 'code', code: 1 }, { kind: 'code', code: 1000040343 }, { kind: 'http-status', status: 500 }, { kind: 'body', body: 'not json' }]) {
  test(`discovery failure ${JSON.stringify(fault)} is retried until it succeeds`, async () => {
    const emulator = await FeishuEmulator.start()
    try {
      emulator.failDiscovery({ count: 2, ...fault })
      const ready = deferred()
      const errors = []
      const t = new FeishuTransport(fastOptions(emulator, { onReady: ready.resolve, onError: (e) => errors.push(e) }))
      const running = t.start()
      await ready.promise
      assert.equal(emulator.stats().discoveryCalls, 3)
      assert.equal(errors.length, 2)
      assert.ok(errors.every((e) => e.terminal === false))
      await t.close()
      assert.deepEqual(await running, { reason: 'closed' })
    } finally {
      await emulator.close()
    }
  })
}

test('the backoff only resets once a connection proved healthy', async () => {
  const emulator = await FeishuEmulator.start()
  try {
    emulator.acceptAndClose(4)
    const delays = []
    const ready = deferred()
    const t = new FeishuTransport(fastOptions(emulator, {
      // From 250 ms: shorter delays are raised by the attempt pacer (at most 4 a second).
      reconnect: { initialDelayMs: 250, maxDelayMs: 2000, multiplier: 2, jitter: 0 },
      onReconnecting: (i) => delays.push(i.delayMs),
      onReady: ready.resolve,
    }))
    const running = t.start()
    // 4 sockets accepted and closed at once: never healthy, so the delay keeps growing.
    await waitFor(() => delays.length >= 4, { what: '4 retries' })
    assert.deepEqual(delays.slice(0, 4), [250, 500, 1000, 2000])
    await t.close()
    await running
  } finally {
    await emulator.close()
  }
})
