// A ping goes out at once on connect with the URL's service_id; pongs set the cadence.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startPair, waitFor } from './helpers.mjs'

test('a ping goes out on connect carrying the service_id of the socket URL', async () => {
  const p = await startPair({ emulator: { serviceId: 4242 } })
  try {
    const pings = await waitFor(() => p.emulator.pings().length >= 1 && p.emulator.pings(), { what: 'first ping' })
    assert.equal(pings[0].service, 4242)
    assert.equal(pings[0].connectionId, p.transport.status().connectionId)
    await waitFor(() => p.transport.status().lastPongAt !== null, { what: 'pong' })
  } finally {
    await p.stop()
  }
})

test("a pong's PingInterval changes the ping cadence", async () => {
  // The emulator starts at 120 s and is switched to 1 s (setClientConfig: later pongs and
  // discovery answers) before the transport connects: a second ping must follow about a
  // second after the first.
  const { FeishuEmulator, FeishuTransport } = await import('../index.js')
  const { deferred, fastOptions } = await import('./helpers.mjs')
  const emulator = await FeishuEmulator.start({ clientConfig: { pingInterval: 120, reconnectCount: -1, reconnectInterval: 120, reconnectNonce: 30 } })
  emulator.setClientConfig({ pingInterval: 1, reconnectCount: -1, reconnectInterval: 120, reconnectNonce: 30 })
  const ready = deferred()
  const t = new FeishuTransport(fastOptions(emulator, { onReady: ready.resolve }))
  const running = t.start()
  try {
    await ready.promise
    await waitFor(() => emulator.pings().length >= 2, { timeoutMs: 5000, what: 'a second ping within ~1 s' })
    const [a, b] = emulator.pings()
    assert.ok(b.at - a.at >= 900, `pings ${b.at - a.at} ms apart`)
    assert.equal(t.status().server.pingIntervalMs, 1000)
  } finally {
    await t.close({ force: true })
    await running
    await emulator.close()
  }
})
