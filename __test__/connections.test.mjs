// `connections: N`: one transport holds N sockets for its app, each with its own
// discovery, liveness and backoff, sharing the handler, dedupe and status. Feishu (and the
// emulator) delivers each event to one live connection of the app at random.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FeishuEmulator, FeishuTransport, FeishuTransportError } from '../index.js'
import { deferred, fastOptions, waitFor } from './helpers.mjs'

const ev = (id) => ({ schema: '2.0', header: { event_id: id, event_type: 'x' }, event: {} })

/** An emulator and a transport with `connections` sockets, started and all connected. */
async function startConnections(connections, { emulator: emulatorOptions = {}, transport: extra = {}, onEvent } = {}) {
  const emulator = await FeishuEmulator.start(emulatorOptions)
  const handled = []
  const notes = []
  const transport = new FeishuTransport(fastOptions(emulator, {
    connections,
    onReady: (info) => notes.push(['ready', info]),
    onReconnecting: (info) => notes.push(['reconnecting', info]),
    onReconnected: (info) => notes.push(['reconnected', info]),
    ...extra,
    onEvent: async (e) => {
      handled.push(e.eventId)
      return onEvent ? onEvent(e) : undefined
    },
  }))
  const running = transport.start()
  running.catch(() => {})
  await waitFor(() => transport.status().connections.every((c) => c.connected), { what: `${connections} connections up` })
  return {
    emulator,
    transport,
    handled,
    notes,
    running,
    async stop() {
      await transport.close({ force: true })
      await emulator.close()
    },
  }
}

test('connections: 2 holds two sockets, and status() shows each and the whole', { timeout: 30_000 }, async () => {
  const p = await startConnections(2)
  try {
    const live = p.emulator.connections()
    assert.equal(live.length, 2, 'the emulator sees two sockets of the app')
    const s = p.transport.status()
    assert.equal(s.state, 'connected')
    assert.equal(s.connected, true)
    assert.deepEqual(s.connections.map((c) => [c.index, c.state, c.connected]), [[0, 'connected', true], [1, 'connected', true]])
    assert.deepEqual(new Set(s.connections.map((c) => c.connectionId)), new Set(live.map((c) => c.id)))
    assert.equal(s.counters.connects, 2)
    // onReady is once per start(), whichever connection was first (checked again once
    // events have gone through, so a late second call would be seen).
    await waitFor(() => p.notes.length > 0, { what: 'onReady' })
    assert.ok([0, 1].includes(p.notes[0][1].connection))
    const id = p.emulator.pushEvent(ev('after-ready'))
    assert.equal((await p.emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(p.notes.map(([k]) => k), ['ready'])
  } finally {
    await p.stop()
  }
})

test('each event is acked on the socket it came in on, and events spread over both', { timeout: 30_000 }, async () => {
  const p = await startConnections(2)
  try {
    const [a, b] = p.emulator.connections().map((c) => c.id)
    // Pinned: we know where each was delivered.
    const pinned = []
    for (let i = 0; i < 20; i++) {
      const on = i % 2 ? a : b
      pinned.push([p.emulator.pushEvent(ev(`pinned-${i}`), { connectionId: on }), on])
    }
    for (const [id, on] of pinned) {
      const ack = await p.emulator.waitForAck(id, { timeoutMs: 5000 })
      assert.equal(ack.code, 200)
      assert.equal(ack.connectionId, on, 'acked on the connection it was delivered to')
    }
    // Unpinned: the emulator picks a live connection at random, as Feishu does.
    const pinnedIds = new Set(pinned.map(([id]) => id))
    assert.equal(await p.emulator.pushMany({ count: 200 }), 200)
    await p.emulator.waitForAllAcked({ timeoutMs: 10_000 })
    const on = new Set(p.emulator.acks().filter((r) => !pinnedIds.has(r.messageId)).map((r) => r.connectionId))
    assert.deepEqual(on, new Set([a, b]), 'both sockets received and acked events')
    assert.equal(p.handled.length, 220)
    assert.equal(p.emulator.stats().pending, 0)
  } finally {
    await p.stop()
  }
})

test('a dropped socket leaves the app hearing on the other while it reconnects; no event lost', { timeout: 30_000 }, async () => {
  // A slow reconnect, so events arrive while connection 1 is down.
  const p = await startConnections(2, {
    transport: { reconnect: { initialDelayMs: 600, maxDelayMs: 600, jitter: 0 } },
    emulator: { ackDeadlineMs: 500 },
  })
  try {
    const statuses = []
    const before = p.transport.status().connections[1].connectionId
    const kept = p.transport.status().connections[0].connectionId
    p.transport.dropConnection('test', { connection: 1 })
    await waitFor(() => p.transport.status().connections[1].state === 'reconnecting', { what: 'connection 1 reconnecting' })
    const s = p.transport.status()
    statuses.push(s)
    assert.equal(s.connections[0].connectionId, kept, 'connection 0 was not touched')
    assert.equal(s.state, 'connected', 'the whole transport is connected while any socket is up')
    assert.equal(s.connected, true)
    // While connection 1 is down, every event goes to the other socket and is handled.
    const ids = []
    for (let i = 0; i < 30; i++) ids.push(p.emulator.pushEvent(ev(`while-down-${i}`)))
    for (const id of ids) {
      const ack = await p.emulator.waitForAck(id, { code: 200, timeoutMs: 5000 })
      assert.equal(ack.connectionId, kept)
    }
    assert.equal(p.transport.status().connections[1].state, 'reconnecting', 'handled while connection 1 was still down')
    await waitFor(() => p.transport.status().connections[1].connected, { what: 'connection 1 back' })
    assert.notEqual(p.transport.status().connections[1].connectionId, before, 'a new socket')
    // Callbacks reach JavaScript after the status changed.
    await waitFor(() => p.notes.some(([k]) => k === 'reconnected'), { what: 'onReconnected' })
    assert.deepEqual(p.notes.filter(([k]) => k !== 'ready').map(([k, info]) => [k, info.connection]), [['reconnecting', 1], ['reconnected', 1]])
    assert.equal(p.notes.find(([k]) => k === 'reconnecting')[1].attempt, 1)
    await p.emulator.waitForAllAcked({ timeoutMs: 5000 })
    assert.equal(new Set(p.handled).size, 30)
  } finally {
    await p.stop()
  }
})

test('close() stops every connection and start() settles once', { timeout: 30_000 }, async () => {
  const p = await startConnections(3)
  let settled = 0
  p.running.then(() => settled++, () => settled++)
  await p.transport.close()
  const result = await p.running
  assert.deepEqual(result, { reason: 'closed' })
  await waitFor(() => p.emulator.connections().length === 0, { what: 'every socket closed' })
  const s = p.transport.status()
  assert.equal(s.state, 'stopped')
  assert.deepEqual(s.connections.map((c) => c.state), ['stopped', 'stopped', 'stopped'])
  assert.equal(settled, 1)
  // And it starts again, all three.
  const again = p.transport.start()
  await waitFor(() => p.emulator.connections().length === 3, { what: 'three sockets again' })
  await p.transport.close()
  assert.deepEqual(await again, { reason: 'closed' })
  await p.emulator.close()
})

test('a terminal error on one connection stops them all, and start() rejects with it', { timeout: 30_000 }, async () => {
  const p = await startConnections(2)
  try {
    // Connection 1's next discovery is refused for good (403 forbidden).
    p.emulator.failDiscovery({ count: 1, kind: 'code', code: 403, msg: 'forbidden' })
    p.transport.dropConnection('test', { connection: 1 })
    const err = await p.running.then(() => null, (e) => e)
    assert.ok(err instanceof FeishuTransportError)
    assert.equal(err.code, 'FORBIDDEN')
    assert.equal(err.terminal, true)
    const s = p.transport.status()
    assert.equal(s.state, 'failed')
    assert.deepEqual(s.connections.map((c) => c.state), ['stopped', 'failed'])
    await waitFor(() => p.emulator.connections().length === 0, { what: 'connection 0 closed too' })
  } finally {
    await p.stop()
  }
})

test('CONNECTION_LIMIT on one connection: it waits maxDelayMs and retries while the others serve', { timeout: 30_000 }, async () => {
  const emulator = await FeishuEmulator.start({ maxConnectionsPerApp: 1 })
  const errors = []
  const reconnecting = []
  const ready = deferred()
  const transport = new FeishuTransport(fastOptions(emulator, {
    connections: 2,
    reconnect: { initialDelayMs: 20, maxDelayMs: 3000, jitter: 0 },
    onReady: () => ready.resolve(),
    onError: (e) => errors.push(e.code),
    onReconnecting: (info) => reconnecting.push(info),
  }))
  const running = transport.start()
  try {
    await ready.promise
    await waitFor(() => reconnecting.length > 0, { what: 'the refused connection to back off' })
    assert.equal(reconnecting[0].error.code, 'CONNECTION_LIMIT')
    assert.equal(reconnecting[0].delayMs, 3000, 'the maximum delay')
    const s = transport.status()
    assert.equal(s.state, 'connected')
    assert.equal(s.connections.filter((c) => c.connected).length, 1)
    const refused = s.connections.find((c) => !c.connected)
    assert.equal(refused.state, 'reconnecting')
    assert.equal(refused.lastError.code, 'CONNECTION_LIMIT')
    assert.equal(reconnecting[0].connection, refused.index)
    const id = emulator.pushEvent(ev('limit'))
    assert.equal((await emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
    assert.ok(errors.every((c) => c === 'CONNECTION_LIMIT'), errors.join())
  } finally {
    await transport.close({ force: true })
    assert.deepEqual(await running, { reason: 'closed' })
    await emulator.close()
  }
})

test('connections: 1 (the default) reports one connection and connection 0 in its callbacks', { timeout: 30_000 }, async () => {
  const p = await startConnections(1)
  try {
    assert.equal(p.transport.status().connections.length, 1)
    await waitFor(() => p.notes.length > 0, { what: 'onReady' })
    assert.deepEqual(p.notes, [['ready', { connection: 0 }]])
    p.transport.dropConnection('test')
    await waitFor(() => p.notes.length === 3, { what: 'reconnected' })
    assert.deepEqual(p.notes.slice(1).map(([k, i]) => [k, i.connection]), [['reconnecting', 0], ['reconnected', 0]])
    assert.throws(() => p.transport.dropConnection('x', { connection: 1 }), (e) => e.code === 'INVALID_CONFIG' && /connection/.test(e.message))
  } finally {
    await p.stop()
  }
})

test('connections must be a whole number from 1 to 50', { timeout: 30_000 }, () => {
  const base = { appId: 'cli_a1b2c3d4e5f60718', appSecret: 'emulator-secret', onEvent: () => {}, proxy: null }
  for (const ok of [1, 2, 50]) assert.doesNotThrow(() => new FeishuTransport({ ...base, connections: ok }))
  for (const bad of [0, 51, 1.5, -1, NaN, Infinity, '2', null]) {
    assert.throws(() => new FeishuTransport({ ...base, connections: bad }), (e) => {
      assert.ok(e instanceof FeishuTransportError)
      assert.equal(e.code, 'INVALID_CONFIG')
      assert.match(e.message, /connections/)
      return true
    }, String(bad))
  }
})
