// start() settles when, and only when, the transport stops.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FeishuTransport, FeishuEmulator, FeishuTransportError } from '../index.js'
import { deferred, fastOptions, startPair, waitFor } from './helpers.mjs'

const pendingFor = async (promise, ms) => {
  // The only bounded wait in the suite: proving something stays pending needs a window.
  const marker = Symbol('pending')
  return (await Promise.race([promise.then(() => 'settled', () => 'settled'), new Promise((r) => setTimeout(() => r(marker), ms))])) === marker
}

test('start() stays pending while connected and resolves {reason:"closed"} after close()', async () => {
  const p = await startPair()
  try {
    assert.equal(p.transport.status().state, 'connected')
    assert.ok(await pendingFor(p.running, 200))
    await p.transport.close()
    assert.deepEqual(await p.running, { reason: 'closed' })
    assert.equal(p.transport.status().state, 'stopped')
  } finally {
    await p.emulator.close()
  }
})

test('start() resolves {reason:"aborted"} when the signal aborts', async () => {
  const emulator = await FeishuEmulator.start()
  try {
    const ready = deferred()
    const t = new FeishuTransport(fastOptions(emulator, { onReady: ready.resolve }))
    const ac = new AbortController()
    const running = t.start({ signal: ac.signal })
    await ready.promise
    ac.abort()
    assert.deepEqual(await running, { reason: 'aborted' })
    // an already-aborted signal settles at once without connecting
    const before = emulator.stats().discoveryCalls
    assert.deepEqual(await t.start({ signal: ac.signal }), { reason: 'aborted' })
    assert.equal(emulator.stats().discoveryCalls, before)
  } finally {
    await emulator.close()
  }
})

test('wrong credentials reject AUTH_FAILED (terminal, feishuCode 514) without retrying', async () => {
  const emulator = await FeishuEmulator.start()
  try {
    const errors = []
    const t = new FeishuTransport(fastOptions(emulator, { appSecret: 'wrong', onError: (e) => errors.push(e) }))
    const err = await t.start().then(() => null, (e) => e)
    assert.ok(err instanceof FeishuTransportError)
    assert.ok(err instanceof Error)
    assert.equal(err.code, 'AUTH_FAILED')
    assert.equal(err.terminal, true)
    assert.equal(err.feishuCode, 514)
    assert.equal(emulator.stats().discoveryCalls, 1)
    assert.equal(errors.length, 1)
    assert.equal(t.status().state, 'failed')
    assert.ok(!err.message.includes('wrong'))
  } finally {
    await emulator.close()
  }
})

test('maxAttempts consecutive failures reject RECONNECT_EXHAUSTED with the last error as cause', async () => {
  const emulator = await FeishuEmulator.start()
  try {
    emulator.failDiscovery({ count: 100, kind: 'http-status', status: 503 })
    const reconnecting = []
    const t = new FeishuTransport(fastOptions(emulator, {
      reconnect: { initialDelayMs: 5, maxDelayMs: 20, maxAttempts: 3 },
      onReconnecting: (i) => reconnecting.push(i),
    }))
    const err = await t.start().then(() => null, (e) => e)
    assert.equal(err.code, 'RECONNECT_EXHAUSTED')
    assert.equal(err.terminal, true)
    assert.ok(err.cause instanceof FeishuTransportError)
    assert.equal(err.cause.code, 'DISCOVERY_FAILED')
    assert.equal(emulator.stats().discoveryCalls, 3)
    assert.deepEqual(reconnecting.map((i) => i.attempt), [1, 2])
  } finally {
    await emulator.close()
  }
})

test('with reconnect:false start() rejects DISCONNECTED at the first drop', async () => {
  const p = await startPair({ transport: { reconnect: false } })
  try {
    p.emulator.dropConnections()
    const err = await p.running.then(() => null, (e) => e)
    assert.equal(err.code, 'DISCONNECTED')
    assert.equal(err.terminal, false)
    assert.equal(p.emulator.stats().discoveryCalls, 1)
  } finally {
    await p.emulator.close()
  }
})

test('a second start() rejects ALREADY_STARTED; after settling, start() works again', async () => {
  const p = await startPair()
  try {
    const err = await p.transport.start().then(() => null, (e) => e)
    assert.equal(err.code, 'ALREADY_STARTED')
    assert.equal(p.transport.status().state, 'connected')
    await p.transport.close()
    assert.deepEqual(await p.running, { reason: 'closed' })
    const again = p.transport.start()
    await waitFor(() => p.transport.status().state === 'connected', { what: 'second run connected' })
    const id = p.emulator.pushEvent({ schema: '2.0', header: { event_id: 'again-1', event_type: 'x' }, event: {} })
    assert.equal((await p.emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
    await p.transport.close()
    assert.deepEqual(await again, { reason: 'closed' })
  } finally {
    await p.emulator.close()
  }
})

test('invalid options throw INVALID_CONFIG at construction', () => {
  const base = { appId: 'cli_a1b2c3d4e5f60718', appSecret: 's', onEvent() {} }
  for (const bad of [
    { appId: 'nope' },
    { appSecret: '' },
    { onEvent: undefined },
    { domain: 'ftp://x' },
    { reconnect: { multiplier: 0.5 } },
    { timeouts: { pongMs: 'soon' } },
    { maxConcurrentHandlers: 0 },
    { logLevel: 'loud' },
  ]) {
    assert.throws(() => new FeishuTransport({ ...base, ...bad }), (e) => e instanceof FeishuTransportError && e.code === 'INVALID_CONFIG' && e.terminal === true, JSON.stringify(bad))
  }
})

test('status() and onStatus report every transition and the counters', async () => {
  const states = []
  const p = await startPair({ transport: { onStatus: (s) => states.push(s.state) } })
  try {
    const id = p.emulator.pushEvent({ schema: '2.0', header: { event_id: 's-1', event_type: 'x' }, event: {} })
    await p.emulator.waitForAck(id, { timeoutMs: 5000 })
    const s = p.transport.status()
    assert.equal(s.connected, true)
    assert.equal(s.counters.events, 1)
    await waitFor(() => p.transport.status().counters.acks === 1, { what: 'ack counted' })
    assert.equal(typeof s.connectionId, 'string')
    assert.equal(s.server.pingIntervalMs, 120000)
    await p.transport.close()
    await p.running
    // onStatus travels on its own queue; wait for the last note rather than assume order.
    await waitFor(() => states.at(-1) === 'stopped', { what: 'stopped status' })
    assert.deepEqual(states, ['connecting', 'connected', 'stopped'])
  } finally {
    await p.emulator.close()
  }
})
