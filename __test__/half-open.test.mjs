// A half-open socket (the peer keeps TCP open and answers nothing) is noticed within
// PingInterval + pongMs, reported as PONG_TIMEOUT, and replaced.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startPair, waitFor } from './helpers.mjs'

test('a stalled server is detected by the pong timeout; events pushed after recovery arrive', async () => {
  const errors = []
  const p = await startPair({
    transport: { pingIntervalMs: 300, timeouts: { pongMs: 400, discoveryMs: 2000, handshakeMs: 2000 }, onError: (e) => errors.push(e) },
  })
  try {
    const first = p.transport.status().connectionId
    const stalledAt = Date.now()
    assert.equal(p.emulator.stall(), 1)
    await waitFor(() => errors.some((e) => e.code === 'PONG_TIMEOUT'), { timeoutMs: 5000, what: 'PONG_TIMEOUT' })
    const detectedIn = Date.now() - stalledAt
    assert.ok(detectedIn <= 300 + 400 + 500, `detected after ${detectedIn} ms`)
    await waitFor(() => p.transport.status().connected && p.transport.status().connectionId !== first, { what: 'a new socket' })
    assert.ok(['PONG_TIMEOUT'].includes(p.transport.status().lastError?.code) || p.transport.status().lastError === null)
    const live = p.emulator.connections().find((c) => c.id === p.transport.status().connectionId)
    const id = p.emulator.pushEvent({ schema: '2.0', header: { event_id: 'after-stall', event_type: 'x' }, event: {} }, { connectionId: live.id })
    assert.equal((await p.emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
  } finally {
    await p.stop()
  }
})
