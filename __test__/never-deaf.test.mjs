// Never deaf: whatever the caller does (a second start(), handlers that never settle) or
// the server sends (a flood of headers), the transport keeps reading and acking, and any
// state in which it cannot is visible in status().
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'
import { FeishuEmulator, FeishuTransport, FeishuTransportError } from '../index.js'
import { deferred, startPair, waitFor } from './helpers.mjs'

const require = createRequire(import.meta.url)
const ev = (id) => ({ schema: '2.0', header: { event_id: id, event_type: 'x' }, event: {} })
const acksOf = (emulator, id) => emulator.acks().filter((a) => a.messageId === id)

test('a refused second start() leaves the live run wired to JavaScript', async () => {
  const logs = []
  const p = await startPair({
    transport: {
      maxConcurrentHandlers: 2,
      logLevel: 'debug',
      logger: (level, message) => logs.push(`${level}: ${message}`),
    },
  })
  try {
    const first = p.emulator.pushEvent(ev('second-start-0'))
    assert.equal((await p.emulator.waitForAck(first, { timeoutMs: 5000 })).code, 200)
    const err = await p.transport.start().then(() => null, (e) => e)
    assert.ok(err instanceof FeishuTransportError)
    assert.equal(err.code, 'ALREADY_STARTED')
    // More events than there are handler slots: each must still be acked, so a slot
    // held by a lost settle would stop the reading after two.
    const ids = [1, 2, 3, 4, 5].map((i) => p.emulator.pushEvent(ev(`second-start-${i}`)))
    for (const id of ids) {
      assert.equal((await p.emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
    }
    assert.equal(p.events.length, 6)
    assert.ok(!logs.some((l) => l.includes('has run for')), logs.join('\n'))
    assert.equal(p.transport.status().backpressure, false)
  } finally {
    await p.stop()
  }
})

test('a handler that never settles is acked 500 after handlerTimeoutMs and frees its slot and its dedupe claim', async () => {
  const late = deferred()
  const calls = new Map()
  const logs = []
  const statuses = []
  const p = await startPair({
    transport: {
      maxConcurrentHandlers: 1,
      handlerTimeoutMs: 300,
      logLevel: 'debug',
      logger: (level, message) => logs.push(`${level}: ${message}`),
      onStatus: (s) => statuses.push(s.backpressure),
    },
    // ackDeadlineMs: the emulator re-delivers after a 500 only once this has passed.
    emulator: { ackDeadlineMs: 400 },
    onEvent: (e) => {
      const n = (calls.get(e.eventId) ?? 0) + 1
      calls.set(e.eventId, n)
      // The first delivery of 'hung' never settles by itself; the test lets it answer
      // late, after it was given up on.
      if (e.eventId === 'hung' && n === 1) return late.promise
      return { handled: e.eventId }
    },
  })
  try {
    const hung = p.emulator.pushEvent(ev('hung'))
    await waitFor(() => calls.get('hung') === 1, { what: 'the hung handler to start' })
    // The only slot is taken: the transport says so instead of looking idle.
    await waitFor(() => p.transport.status().backpressure, { what: 'backpressure in status()' })
    assert.ok(statuses.includes(true), 'onStatus reported the backpressure')
    const next = p.emulator.pushEvent(ev('next'))
    const nextAck = await p.emulator.waitForAck(next, { timeoutMs: 5000 })
    assert.equal(nextAck.code, 200)
    assert.deepEqual(JSON.parse(nextAck.data), { handled: 'next' })
    const firstAck = acksOf(p.emulator, hung).find((a) => a.delivery === 1)
    assert.equal(firstAck.code, 500)
    const s = p.transport.status()
    assert.equal(s.counters.handlerTimeouts, 1)
    assert.ok(statuses.includes(false), 'onStatus reported the end of the backpressure')
    // The claim was released: the re-delivery runs the handler again and is acked 200.
    await waitFor(() => acksOf(p.emulator, hung).some((a) => a.code === 200), { what: 'the re-delivery acked 200' })
    assert.equal(calls.get('hung'), 2)
    // The late result is ignored (no second ack for that delivery) and logged once.
    const before = p.emulator.acks().length
    late.resolve({ late: true })
    await waitFor(() => logs.some((l) => l.includes('settled after it was timed out')), { what: 'the late-result log line' })
    assert.equal(logs.filter((l) => l.includes('settled after it was timed out')).length, 1)
    assert.equal(p.emulator.acks().length, before)
    assert.ok(logs.some((l) => l.startsWith('warn:') && l.includes('handlerTimeoutMs')), logs.join('\n'))
  } finally {
    late.resolve()
    await p.stop()
  }
})

test('while every handler slot is busy, status() shows backpressure, and it clears when one settles', async () => {
  const release = deferred()
  const p = await startPair({ transport: { maxConcurrentHandlers: 1 }, onEvent: () => release.promise })
  try {
    assert.equal(p.transport.status().backpressure, false)
    const id = p.emulator.pushEvent(ev('busy-1'))
    await waitFor(() => p.transport.status().backpressure, { what: 'backpressure' })
    assert.equal(p.transport.status().state, 'connected')
    release.resolve()
    assert.equal((await p.emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
    await waitFor(() => !p.transport.status().backpressure, { what: 'backpressure cleared' })
    assert.equal(p.transport.status().counters.handlerTimeouts, 0)
  } finally {
    release.resolve()
    await p.stop()
  }
})

test('handlerTimeoutMs: 0 and Infinity wait for ever; negative and NaN are INVALID_CONFIG', () => {
  const base = { appId: 'cli_a1b2c3d4e5f60718', appSecret: 'secret-value', onEvent() {} }
  for (const ok of [0, Infinity, 1, 300000]) new FeishuTransport({ ...base, handlerTimeoutMs: ok })
  for (const bad of [-1, NaN, '300']) {
    assert.throws(() => new FeishuTransport({ ...base, handlerTimeoutMs: bad }), (e) => e instanceof FeishuTransportError && e.code === 'INVALID_CONFIG', String(bad))
  }
})

test('eventId and eventType follow the one rule dedupe keys on', async () => {
  const p = await startPair({ transport: { dedupe: { ttlMs: 60000 } } })
  try {
    const cases = [
      // v2: the header's fields, even when a uuid is present too.
      [{ header: { event_id: 'v2-id', event_type: 'v2.type' }, uuid: 'ignored', event: { type: 'ignored' } }, 'v2-id', 'v2.type'],
      // A header without an id has no id: the uuid is a v1 field, read only without a header.
      [{ header: {}, uuid: 'u-1', event: {} }, null, null],
      // v1: uuid and event.type.
      [{ uuid: 'v1-id', event: { type: 'message' } }, 'v1-id', 'message'],
      // Non-strings are no id or type at all.
      [{ uuid: 7, event: { type: 3 } }, null, null],
      [{ header: { event_id: '', event_type: null }, event: { type: 'v1.fallback' } }, null, 'v1.fallback'],
    ]
    for (const [payload, eventId, eventType] of cases) {
      const id = p.emulator.pushEvent(payload)
      await p.emulator.waitForAck(id, { timeoutMs: 5000 })
      const e = p.events.find((x) => x.messageId === id)
      assert.equal(e.eventId, eventId, JSON.stringify(payload))
      assert.equal(e.eventType, eventType, JSON.stringify(payload))
    }
    // The id JavaScript sees is the one dedupe used: the same {header:{}, uuid} twice
    // runs the handler twice (no key), the same v1 uuid twice runs it once.
    const before = p.events.length
    for (const payload of [{ header: {}, uuid: 'u-2' }, { header: {}, uuid: 'u-2' }, { uuid: 'v1-dup' }, { uuid: 'v1-dup' }]) {
      await p.emulator.waitForAck(p.emulator.pushEvent(payload), { timeoutMs: 5000 })
    }
    assert.equal(p.events.length - before, 3)
  } finally {
    await p.stop()
  }
})

test('constructing and dropping 10 000 transports leaves no cleanup hook or entry behind', async () => {
  const { __cleanupStats } = require('../native.js')
  const v8 = await import('node:v8')
  v8.setFlagsFromString('--expose-gc')
  const gc = globalThis.gc ?? (await import('node:vm')).runInNewContext('gc')
  const base = { appId: 'cli_a1b2c3d4e5f60718', appSecret: 'secret-value', onEvent() {}, proxy: null }
  const before = __cleanupStats()
  for (let i = 0; i < 10_000; i++) new FeishuTransport(base)
  // One hook for this environment, whatever the number of transports.
  assert.ok(__cleanupStats().hooks <= Math.max(before.hooks, 1), JSON.stringify(__cleanupStats()))
  await waitFor(async () => {
    gc()
    await new Promise((r) => setImmediate(r))
    return __cleanupStats().transports <= before.transports + 100
  }, { what: `collected transports to leave the cleanup list (${JSON.stringify(__cleanupStats())})`, timeoutMs: 20_000 })
})

test('a panic inside a run rejects start() with a FeishuTransportError INTERNAL, and the transport starts again', () => {
  const child = fileURLToPath(new URL('./children/panic-in-run.cjs', import.meta.url))
  const r = spawnSync(process.execPath, [child], {
    env: { ...process.env, FEISHU_TRANSPORT_TEST_FAULTS: '1' },
    encoding: 'utf8',
    timeout: 60_000,
  })
  assert.equal(r.status, 0, r.stdout + r.stderr)
  const out = JSON.parse(r.stdout.trim().split('\n').pop())
  assert.deepEqual(out, {
    armed: true,
    name: 'FeishuTransportError',
    code: 'INTERNAL',
    terminal: true,
    state: 'failed',
    onError: 'INTERNAL',
    again: 'closed',
  })
})

test('without FEISHU_TRANSPORT_TEST_FAULTS the fault hook arms nothing', () => {
  const { __testPanicNextRun } = require('../native.js')
  assert.equal(process.env.FEISHU_TRANSPORT_TEST_FAULTS, undefined)
  assert.equal(__testPanicNextRun(), false)
})

test('a frame of millions of empty headers is dropped, never echoed, and costs little memory', async () => {
  const emulator = await FeishuEmulator.start()
  const child = spawn(process.execPath, [fileURLToPath(new URL('./children/header-flood.cjs', import.meta.url))], {
    env: { ...process.env, FLOOD_DOMAIN: emulator.domain, FLOOD_APP_ID: emulator.appId, FLOOD_APP_SECRET: emulator.appSecret },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const lines = []
  let buffered = ''
  child.stdout.on('data', (d) => {
    buffered += d
    const parts = buffered.split('\n')
    buffered = parts.pop()
    for (const l of parts) if (l.trim()) lines.push(JSON.parse(l))
  })
  const exited = new Promise((r) => child.on('exit', r))
  try {
    await waitFor(() => lines.some((l) => l.ready), { what: 'the child connected', timeoutMs: 20_000 })
    // 8.3 million empty headers (field 5, length 0) before the frame's real ones.
    const empties = Buffer.alloc(8_300_000 * 2)
    for (let i = 0; i < empties.length; i += 2) empties[i] = 0x2a
    const messageId = 'flood-1'
    const frame = Buffer.concat([
      Buffer.from([0x08, 0x01, 0x18, 0x01, 0x20, 0x01]), // seq_id 1, service 1, method 1 (data)
      empties,
      pbHeader('type', 'event'),
      pbHeader('message_id', messageId),
      pbHeader('sum', '1'),
      pbHeader('seq', '0'),
      pbField(8, Buffer.from(JSON.stringify(ev('flood')))),
    ])
    emulator.sendRaw(frame)
    const report = await waitFor(() => lines.find((l) => 'droppedFrames' in l), { what: 'the flood frame dropped', timeoutMs: 60_000 })
    const id = emulator.pushEvent(ev('after-flood'))
    assert.equal((await emulator.waitForAck(id, { timeoutMs: 10_000 })).code, 200, 'the connection still works')
    assert.equal(await exited, 0)
    assert.equal(report.droppedFrames, 1)
    assert.equal(report.logLines, 1, 'logged once')
    assert.ok(!emulator.acks().some((a) => a.messageId === messageId), 'never echoed')
    // Before the bound, the 16.6 MB frame grew the peak RSS by about 290 MB.
    const frameMb = frame.length / 1e6
    assert.ok(report.peakGrowthMb < 4 * frameMb, JSON.stringify({ ...report, frameMb }))
  } finally {
    child.kill()
    await emulator.close()
  }
})

/** A protobuf length-delimited field. */
function pbField(tag, bytes) {
  return Buffer.concat([pbVarint((tag << 3) | 2), pbVarint(bytes.length), bytes])
}

function pbVarint(n) {
  const out = []
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return Buffer.from(out)
}

function pbHeader(key, value) {
  return pbField(5, Buffer.concat([pbField(1, Buffer.from(key)), pbField(2, Buffer.from(value))]))
}

test('through compat: a second start() and a refused transport.start() leave the live run acking', async () => {
  const { WSClient } = require('../compat.js')
  const emulator = await FeishuEmulator.start()
  const handled = []
  const client = new WSClient({
    appId: emulator.appId,
    appSecret: emulator.appSecret,
    domain: emulator.domain,
    loggerLevel: 1,
    logger: { error() {}, warn() {}, info() {}, debug() {}, trace() {} },
  })
  const eventDispatcher = { invoke: async (data) => { handled.push(data.header.event_id) } }
  try {
    await client.start({ eventDispatcher })
    await waitFor(() => client.transport && client.transport.status().connected, { what: 'compat connected' })
    const first = emulator.pushEvent(ev('compat-0'))
    assert.equal((await emulator.waitForAck(first, { timeoutMs: 5000 })).code, 200)
    await client.start({ eventDispatcher })
    const err = await client.transport.start().then(() => null, (e) => e)
    assert.equal(err && err.code, 'ALREADY_STARTED')
    const ids = [1, 2, 3].map((i) => emulator.pushEvent(ev(`compat-${i}`)))
    for (const id of ids) assert.equal((await emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
    assert.deepEqual(handled, ['compat-0', 'compat-1', 'compat-2', 'compat-3'])
  } finally {
    client.close({ force: true })
    await emulator.close()
  }
})
