// The durable dedupe store (`dedupe.store`), against a real SQLite file and a real
// redis-server on a free loopback port, with bot processes that restart, die and share.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { FeishuTransport, FeishuEmulator, fastOptions, waitFor, startPair, deferred } from './helpers.mjs'
import { redisServer } from './support/redis.mjs'

const BOT = fileURLToPath(new URL('./children/store-bot.cjs', import.meta.url))
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'feishu-store-'))
after(() => fs.rmSync(tmp, { recursive: true, force: true }))

let n = 0
const dbPath = () => path.join(tmp, `dedupe-${++n}.db`)
const payload = (eventId) => ({
  schema: '2.0',
  header: { event_id: eventId, event_type: 'im.message.receive_v1', app_id: 'x', create_time: '0', token: '' },
  event: { n: eventId },
})

/** A bot process (children/store-bot.cjs); `lines` collects what it prints. */
function bot(emulator, name, store, extra = {}) {
  const child = spawn(process.execPath, [BOT, JSON.stringify({
    appId: emulator.appId, appSecret: emulator.appSecret, domain: emulator.domain, name, store, ...extra,
  })], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = []
  let buf = ''
  child.stdout.on('data', (d) => {
    buf += d
    let at
    while ((at = buf.indexOf('\n')) >= 0) { lines.push(buf.slice(0, at)); buf = buf.slice(at + 1) }
  })
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  return {
    child,
    lines,
    exited,
    handled: () => lines.filter((l) => l.startsWith('handled ')).length,
    ready: () => waitFor(() => lines.includes('ready'), { what: `${name} ready (${lines.join(' | ')})` }),
    stop() { child.stdin.end(); return exited },
    kill9() { child.kill('SIGKILL'); return exited },
  }
}

/** Starts `b` and returns the emulator connection id it got. */
async function connect(emulator, b) {
  const before = new Set(emulator.connections().map((c) => c.id))
  await b.ready()
  const conn = await waitFor(() => emulator.connections().find((c) => !before.has(c.id)), { what: 'its connection' })
  return conn.id
}

test('dedupe.store: an unparsable string is INVALID_CONFIG naming the accepted forms', async () => {
  const emulator = await FeishuEmulator.start()
  try {
    // `#insecure` is the redis crate's "skip certificate checks": never accepted.
    for (const store of ['sqlite:', 'Memory', 'mysql://root:hunter22@db/x', 'redis://', 'file:/tmp/x', 'rediss://:hunter22@127.0.0.1:6380/#insecure']) {
      assert.throws(() => new FeishuTransport(fastOptions(emulator, { dedupe: { store } })), (e) => {
        assert.equal(e.code, 'INVALID_CONFIG', store)
        assert.match(e.message, /dedupe\.store/)
        assert.match(e.message, /'memory', 'sqlite:<path>'.*'redis:\/\//)
        assert.doesNotMatch(e.message, /hunter22/)
        return true
      })
    }
    assert.throws(() => new FeishuTransport(fastOptions(emulator, { dedupe: { store: 42 } })), /dedupe\.store must be a string/)
    for (const store of ['memory', `sqlite:${dbPath()}`, 'redis://127.0.0.1:1']) {
      new FeishuTransport(fastOptions(emulator, { dedupe: { store } }))
    }
  } finally {
    await emulator.close()
  }
})

test('a SQLite file that is not a database fails the constructor with INVALID_CONFIG naming it', async () => {
  const emulator = await FeishuEmulator.start()
  try {
    const file = path.join(tmp, 'not-a-db.db')
    fs.writeFileSync(file, 'this is a text file, not SQLite\n'.repeat(200))
    assert.throws(() => new FeishuTransport(fastOptions(emulator, { dedupe: { store: `sqlite:${file}` } })), (e) => {
      assert.equal(e.code, 'INVALID_CONFIG')
      assert.ok(e.message.includes(file), e.message)
      assert.match(e.message, /not a database/)
      return true
    })
  } finally {
    await emulator.close()
  }
})

test('status().store names the store and counters.storeErrors starts at 0', async () => {
  const memory = await startPair()
  try {
    assert.deepEqual(memory.transport.status().store, { kind: 'memory', healthy: true })
    assert.equal(memory.transport.status().counters.storeErrors, 0)
  } finally {
    await memory.stop()
  }
  const sqlite = await startPair({ transport: { dedupe: { store: `sqlite:${dbPath()}` } } })
  try {
    const id = sqlite.emulator.pushEvent(payload('ev-status'))
    assert.equal((await sqlite.emulator.waitForAck(id)).code, 200)
    assert.deepEqual(sqlite.transport.status().store, { kind: 'sqlite', healthy: true })
  } finally {
    await sqlite.stop()
  }
})

for (const how of ['exits', 'is killed with SIGKILL right after its ack']) {
  test(`SQLite, restart: process A handles an event and ${how}; process B acks the re-delivery with A's result without its handler`, async () => {
    const emulator = await FeishuEmulator.start()
    const store = `sqlite:${dbPath()}`
    try {
      const a = bot(emulator, 'A', store)
      await connect(emulator, a)
      const first = emulator.pushEvent(payload('ev-restart'))
      const ackA = await emulator.waitForAck(first)
      assert.equal(ackA.code, 200)
      assert.deepEqual(JSON.parse(ackA.data), { by: 'A' })
      if (how === 'exits') await a.stop()
      else await a.kill9()
      assert.equal(a.handled(), 1)

      const b = bot(emulator, 'B', store)
      await connect(emulator, b)
      const again = emulator.pushEvent(payload('ev-restart'))
      const ackB = await emulator.waitForAck(again)
      assert.equal(ackB.code, 200)
      assert.equal(ackB.data, ackA.data, 'the same result as A')
      assert.equal(b.handled(), 0, `B's handler was not called: ${b.lines.join(' | ')}`)
      // and a new event is handled by B as usual
      const fresh = emulator.pushEvent(payload('ev-new'))
      assert.deepEqual(JSON.parse((await emulator.waitForAck(fresh)).data), { by: 'B' })
      await b.stop()
    } finally {
      await emulator.close()
    }
  })
}

test('SQLite, lease: the claim of a holder that died mid-handler is taken over once its lease has run out', async () => {
  const emulator = await FeishuEmulator.start()
  const store = `sqlite:${dbPath()}`
  // handlerTimeoutMs 2000: the lease is 2000 + 5000 ms (and B's 1 s wait on a live claim
  // ends before its own handler timeout).
  const lease = 7000
  try {
    const a = bot(emulator, 'A', store, { hang: true, handlerTimeoutMs: 2000 })
    await connect(emulator, a)
    emulator.pushEvent(payload('ev-lease'))
    await waitFor(() => a.handled() === 1, { what: 'A handling' })
    const claimedAt = Date.now()
    await a.kill9()

    const b = bot(emulator, 'B', store, { handlerTimeoutMs: 2000 })
    await connect(emulator, b)
    // Within the lease: not handled twice; acked 500 so Feishu re-delivers later.
    const early = emulator.pushEvent(payload('ev-lease'))
    assert.equal((await emulator.waitForAck(early)).code, 500)
    assert.ok(Date.now() - claimedAt < lease, 'still within the lease')
    assert.equal(b.handled(), 0)
    // After it: B takes the claim over and handles the event.
    await waitFor(() => Date.now() - claimedAt > lease + 100, { timeoutMs: lease + 2000, intervalMs: 50, what: 'the lease to run out' })
    const late = emulator.pushEvent(payload('ev-lease'))
    const ack = await emulator.waitForAck(late)
    assert.equal(ack.code, 200)
    assert.deepEqual(JSON.parse(ack.data), { by: 'B' })
    assert.equal(b.handled(), 1)
    await b.stop()
  } finally {
    await emulator.close()
  }
})

test('SQLite, one read burst: each event settles on its own (a stored result answers, a success is stored, a failure and a timed-out handler release their claims)', async () => {
  // Events pushed together reach the client in one read burst, claimed in the store in
  // one request (src/core/durable.rs, DurableBurst); what the burst finds and does must
  // still be decided per event.
  const calls = new Map()
  let failing = true
  const pair = await startPair({
    // No re-delivery by the emulator: the test re-delivers itself.
    emulator: { maxRedeliveries: 0 },
    transport: { handlerTimeoutMs: 300, dedupe: { store: `sqlite:${dbPath()}` } },
    onEvent: (e) => {
      calls.set(e.eventId, (calls.get(e.eventId) ?? 0) + 1)
      if (failing && e.eventId === 'ev-fail') throw new Error('not this time')
      if (failing && e.eventId === 'ev-hang') return new Promise(() => {})
      return { id: e.eventId }
    },
  })
  try {
    const { emulator } = pair
    const stored = await emulator.waitForAck(emulator.pushEvent(payload('ev-done')))
    assert.equal(stored.code, 200)
    const burst = ['ev-done', 'ev-ok', 'ev-fail', 'ev-hang'].map((id) => emulator.pushEvent(payload(id)))
    const [done, ok, fail, hang] = await Promise.all(burst.map((m) => emulator.waitForAck(m)))
    assert.equal(done.code, 200)
    assert.equal(done.data, stored.data, 'the stored result, without the handler')
    assert.deepEqual(JSON.parse(ok.data), { id: 'ev-ok' })
    assert.equal(fail.code, 500)
    assert.equal(hang.code, 500, 'acked 500 at handlerTimeoutMs')
    assert.deepEqual(Object.fromEntries(calls), { 'ev-done': 1, 'ev-ok': 1, 'ev-fail': 1, 'ev-hang': 1 })
    // Released: the re-deliveries run the handler again (a live claim would hold them
    // off with a 500 after 1 s); the stored success is answered without it.
    failing = false
    const again = ['ev-ok', 'ev-fail', 'ev-hang'].map((id) => emulator.pushEvent(payload(id)))
    const [ok2, fail2, hang2] = await Promise.all(again.map((m) => emulator.waitForAck(m)))
    assert.equal(ok2.data, ok.data)
    assert.deepEqual(JSON.parse(fail2.data), { id: 'ev-fail' })
    assert.deepEqual(JSON.parse(hang2.data), { id: 'ev-hang' })
    assert.deepEqual(Object.fromEntries(calls), { 'ev-done': 1, 'ev-ok': 1, 'ev-fail': 2, 'ev-hang': 2 })
    assert.equal(pair.transport.status().counters.storeErrors, 0)
  } finally {
    await pair.stop()
  }
})

/** Whether the sqlite3 CLI is here: the next test breaks the store's file through it. */
const HAS_SQLITE3 = spawnSync('sqlite3', ['-version']).status === 0

/**
 * Runs `statements` on the SQLite file `file` through the sqlite3 CLI: a connection of
 * its own, as another process on the host would have.
 */
function sqlite3(file, statements) {
  const r = spawnSync('sqlite3', ['-cmd', '.timeout 5000', file, statements], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
}
// A trigger that makes every write of the live store fail, as a full or failing disk
// would (SQLite re-prepares its statements after this schema change). Only the table's
// name is used: its columns may change.
const FAIL_WRITES = `CREATE TRIGGER boom BEFORE INSERT ON feishu_transport_dedupe_log BEGIN SELECT RAISE(ABORT, 'injected failure'); END;`
const HEAL = 'DROP TRIGGER boom;'

test('SQLite refusing writes mid-run: bursts are still handled once and acked, each failure counted, each outage logged once; results stored again once it heals', { skip: !HAS_SQLITE3 && 'the sqlite3 CLI is not installed' }, async () => {
  const db = dbPath()
  const logs = []
  const calls = new Map()
  let gate = null
  const pair = await startPair({
    emulator: { maxRedeliveries: 0 },
    transport: { dedupe: { store: `sqlite:${db}` }, logLevel: 'info', logger: (level, message) => logs.push(`${level} ${message}`) },
    onEvent: async (e) => {
      calls.set(e.eventId, (calls.get(e.eventId) ?? 0) + 1)
      if (gate) await gate.promise
      return { id: e.eventId }
    },
  })
  const { emulator, transport } = pair
  const push = (ids) => ids.map((id) => emulator.pushEvent(payload(id)))
  /** Every ack of `messages` carries its own handler's result. */
  const acked = async (messages, ids) => {
    const acks = await Promise.all(messages.map((m) => emulator.waitForAck(m)))
    acks.forEach((ack, i) => {
      assert.equal(ack.code, 200, ids[i])
      assert.deepEqual(JSON.parse(ack.data), { id: ids[i] })
    })
  }
  const count = (re) => logs.filter((l) => re.test(l)).length
  const outage = { unreachable: /^warn the dedupe store is unreachable/, back: /^info the dedupe store answers again/ }
  const state = () => ({
    storeErrors: transport.status().counters.storeErrors,
    healthy: transport.status().store.healthy,
    unreachable: count(outage.unreachable),
    back: count(outage.back),
  })
  try {
    // 1. Claims refused before a burst: handled anyway, a claim and a result counted per event.
    sqlite3(db, FAIL_WRITES)
    const down = ['ev-down-1', 'ev-down-2', 'ev-down-3']
    await acked(push(down), down)
    assert.deepEqual(state(), { storeErrors: 6, healthy: false, unreachable: 1, back: 0 }, logs.join('\n'))

    // 2. Healed, then results refused while the next burst's handlers run (claims stored).
    sqlite3(db, HEAL)
    gate = deferred()
    const mid = ['ev-mid-1', 'ev-mid-2', 'ev-mid-3']
    const midMessages = push(mid)
    await waitFor(() => mid.every((id) => calls.get(id) === 1), { what: 'the handlers running' })
    assert.deepEqual(state(), { storeErrors: 6, healthy: true, unreachable: 1, back: 1 }, logs.join('\n'))
    sqlite3(db, FAIL_WRITES)
    gate.resolve()
    gate = null
    await acked(midMessages, mid)
    assert.deepEqual(state(), { storeErrors: 9, healthy: false, unreachable: 2, back: 1 }, logs.join('\n'))
    assert.match(logs.findLast((l) => outage.unreachable.test(l)), /store the result: SQLite: injected failure/)

    // 3. Healed: the next burst's results are stored, so a second transport (its own
    // memory) acks their re-delivery with them, without its handler.
    sqlite3(db, HEAL)
    const after = ['ev-after-1', 'ev-after-2']
    await acked(push(after), after)
    assert.deepEqual(state(), { storeErrors: 9, healthy: true, unreachable: 2, back: 2 }, logs.join('\n'))
    assert.deepEqual([...calls.values()], Array(8).fill(1), 'each event handled once')
    await transport.close({ force: true })
    const bEvents = []
    const b = new FeishuTransport(fastOptions(emulator, { dedupe: { store: `sqlite:${db}` }, onEvent: (e) => { bEvents.push(e.eventId); return { by: 'B' } } }))
    b.start().catch(() => {})
    try {
      await waitFor(() => emulator.connections().length === 1 && b.status().connected, { what: 'B connected' })
      await acked(push(after), after)
      assert.deepEqual(bEvents, [])
      // An event handled during the outage has no stored result: handled again (at least once).
      const [again] = await Promise.all(push(['ev-down-1']).map((m) => emulator.waitForAck(m)))
      assert.deepEqual(JSON.parse(again.data), { by: 'B' })
      assert.deepEqual(bEvents, ['ev-down-1'])
    } finally {
      await b.close({ force: true })
    }
  } finally {
    await pair.stop()
  }
})

/**
 * Two processes (child bots) sharing `store`, both running before either event: each
 * event delivered to one and re-delivered to the other is handled once, and both acks
 * carry its result.
 */
async function sharedByTwoProcesses(store) {
  const emulator = await FeishuEmulator.start()
  const bots = []
  try {
    const a = bot(emulator, 'A', store)
    bots.push(a)
    const connA = await connect(emulator, a)
    const b = bot(emulator, 'B', store)
    bots.push(b)
    const connB = await connect(emulator, b)
    for (const [first, second, id] of [[connA, connB, 'ev-ab'], [connB, connA, 'ev-ba']]) {
      const m1 = emulator.pushEvent(payload(id), { connectionId: first })
      const ack1 = await emulator.waitForAck(m1)
      const m2 = emulator.pushEvent(payload(id), { connectionId: second })
      const ack2 = await emulator.waitForAck(m2)
      assert.equal(ack1.connectionId, first)
      assert.equal(ack2.connectionId, second)
      assert.equal(ack1.code, 200)
      assert.equal(ack2.code, 200)
      assert.equal(ack2.data, ack1.data, `${id}: the same result in both acks`)
    }
    assert.equal(a.handled() + b.handled(), 2, `one handler call per event: ${[...a.lines, ...b.lines].join(' | ')}`)
    assert.equal(a.handled(), 1)
    await Promise.all([a.stop(), b.stop()])
  } finally {
    // A failed assertion leaves the bots running: killed, so the test fails, not hangs.
    await Promise.all(bots.filter((x) => x.child.exitCode === null && x.child.signalCode === null).map((x) => x.kill9()))
    await emulator.close()
  }
}

test('Redis, two processes: an event delivered to one and re-delivered to the other is handled once, both acks carry its result', async () => {
  const redis = await redisServer()
  try {
    await sharedByTwoProcesses(redis.url)
  } finally {
    await redis.stop()
  }
})

// Both store threads have read the file when they open, before either event: only the
// rows each reads before it writes (the other's claim, then its result) tell it.
test('SQLite, two processes on one file: an event delivered to one and re-delivered to the other is handled once, both acks carry its result', async () => {
  await sharedByTwoProcesses(`sqlite:${dbPath()}`)
})

test('Redis stopped mid-run: events are still handled, storeErrors counted and logged once; shared again once it returns', async () => {
  const redis = await redisServer()
  const logs = []
  const transport = { dedupe: { store: redis.url }, logLevel: 'info', logger: (level, message) => logs.push(`${level} ${message}`) }
  const a = await startPair({ transport, onEvent: (e) => ({ by: 'A', id: e.eventId }) })
  try {
    const ok = a.emulator.pushEvent(payload('ev-before'))
    assert.equal((await a.emulator.waitForAck(ok)).code, 200)
    assert.equal(a.transport.status().counters.storeErrors, 0)

    await redis.stop()
    for (const id of ['ev-down-1', 'ev-down-2', 'ev-down-3']) {
      const m = a.emulator.pushEvent(payload(id))
      assert.equal((await a.emulator.waitForAck(m, { timeoutMs: 15_000 })).code, 200, `${id} handled without the store`)
    }
    const down = a.transport.status()
    assert.ok(down.counters.storeErrors >= 3, JSON.stringify(down.counters))
    assert.deepEqual(down.store, { kind: 'redis', healthy: false })
    const unreachable = logs.filter((l) => /dedupe store is unreachable/.test(l))
    assert.equal(unreachable.length, 1, logs.join('\n'))
    assert.match(unreachable[0], /^warn /)

    await redis.start()
    const back = a.emulator.pushEvent(payload('ev-back'))
    const ackBack = await a.emulator.waitForAck(back, { timeoutMs: 15_000 })
    await waitFor(() => a.transport.status().store.healthy, { timeoutMs: 15_000, what: 'the store healthy again' })
    assert.equal(logs.filter((l) => /dedupe store answers again/.test(l)).length, 1, logs.join('\n'))

    // Shared again: a second transport (its own memory) gets the re-delivery of an event
    // handled once the store was back and acks it with that result, without its handler.
    const bEvents = []
    const b = new FeishuTransport(fastOptions(a.emulator, { dedupe: { store: redis.url }, onEvent: (e) => { bEvents.push(e); return { by: 'B' } } }))
    const before = new Set(a.emulator.connections().map((c) => c.id))
    b.start().catch(() => {})
    const connB = await waitFor(() => a.emulator.connections().find((c) => !before.has(c.id)), { what: 'B connected' })
    const ev = payload(`ev-shared-${Date.now()}`)
    const first = a.emulator.pushEvent(ev, { connectionId: a.emulator.connections().find((c) => before.has(c.id)).id })
    const ack1 = await a.emulator.waitForAck(first, { timeoutMs: 15_000 })
    const second = a.emulator.pushEvent(ev, { connectionId: connB.id })
    const ack2 = await a.emulator.waitForAck(second, { timeoutMs: 15_000 })
    assert.equal(ack2.data, ack1.data)
    assert.equal(bEvents.length, 0)
    assert.ok(ackBack.code === 200)
    await b.close({ force: true })
  } finally {
    await a.stop()
    await redis.stop()
  }
})

test('a Redis password never appears in logs, errors or status', async () => {
  // A closed port: every store call fails, so the crate's errors reach the log.
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)) })
  })
  const secret = 'Sup3rSecretRedisPw'
  const logs = []
  const a = await startPair({
    transport: { dedupe: { store: `redis://bot:${secret}@127.0.0.1:${port}/0` }, logLevel: 'debug', logger: (level, message) => logs.push(message) },
    // A handler failure is logged with its message: the password in it must be hidden,
    // which proves it was learned as a secret.
    onEvent: (e) => { if (e.eventId === 'ev-pw-fail') throw new Error(`auth with ${secret} refused`) },
  })
  try {
    const m = a.emulator.pushEvent(payload('ev-pw'))
    assert.equal((await a.emulator.waitForAck(m, { timeoutMs: 15_000 })).code, 200)
    const f = a.emulator.pushEvent(payload('ev-pw-fail'))
    assert.equal((await a.emulator.waitForAck(f, { timeoutMs: 15_000 })).code, 500)
    await waitFor(() => logs.some((l) => /auth with/.test(l)), { what: 'the handler failure log line' })
    await waitFor(() => logs.some((l) => /unreachable/.test(l)), { what: 'the outage log line' })
    const seen = JSON.stringify({ logs, status: a.transport.status() })
    assert.ok(!seen.includes(secret), seen)
    assert.match(seen, /unreachable/)
  } finally {
    await a.stop()
  }
  // An unusable URL's error does not show it either.
  assert.throws(() => new FeishuTransport({ appId: 'cli_0123456789abcdef', appSecret: 's', dedupe: { store: `redis://:${secret}@[bad` } }), (e) => {
    assert.ok(!e.message.includes(secret), e.message)
    return true
  })
})

// rediss://: the store trusts exactly what the transport's sockets trust (bundled roots,
// tls.caPem, tls.systemRoots), against a redis-server serving TLS only (no plain port).
const certs = FeishuEmulator.generateTestCertificates()
const TLS_PASSWORD = 'Tls-Redis-Pw-7c1e'

/** Two transports on one emulator sharing the store `store`; `tls` is their `tls` option. */
async function twoTransports(store, tls, logs) {
  const emulator = await FeishuEmulator.start()
  const calls = []
  const make = (name) => {
    const t = new FeishuTransport(fastOptions(emulator, {
      tls,
      dedupe: { store },
      logLevel: 'debug',
      logger: (level, message) => logs.push(`${level} ${message}`),
      onEvent: (e) => { calls.push(`${name} ${e.eventId}`); return { by: name } },
    }))
    return t
  }
  const conns = []
  const transports = []
  for (const name of ['A', 'B']) {
    const before = new Set(emulator.connections().map((c) => c.id))
    const t = make(name)
    t.start().catch(() => {})
    transports.push(t)
    conns.push((await waitFor(() => emulator.connections().find((c) => !before.has(c.id)), { what: `${name} connected` })).id)
  }
  return {
    emulator,
    transports,
    calls,
    /** Delivers `id` to A, then re-delivers it to B; both acks. */
    async deliverTwice(id) {
      const first = await emulator.waitForAck(emulator.pushEvent(payload(id), { connectionId: conns[0] }), { timeoutMs: 15_000 })
      const second = await emulator.waitForAck(emulator.pushEvent(payload(id), { connectionId: conns[1] }), { timeoutMs: 15_000 })
      return [first, second]
    },
    async stop() {
      await Promise.all(transports.map((t) => t.close({ force: true })))
      await emulator.close()
    },
  }
}

test('rediss:// with tls.caPem trusting the server\'s CA: an event re-delivered to a second transport is handled once', async () => {
  const redis = await redisServer({ tls: certs, password: TLS_PASSWORD })
  const logs = []
  const pair = await twoTransports(redis.url, { caPem: certs.caPem }, logs)
  try {
    const [first, second] = await pair.deliverTwice('ev-rediss')
    assert.equal(first.code, 200)
    assert.equal(second.code, 200)
    assert.deepEqual(JSON.parse(first.data), { by: 'A' })
    assert.equal(second.data, first.data, 'B acks with A\'s stored result')
    assert.deepEqual(pair.calls, ['A ev-rediss'], `one handler call: ${logs.join('\n')}`)
    for (const t of pair.transports) {
      assert.deepEqual(t.status().store, { kind: 'redis', healthy: true })
      assert.equal(t.status().counters.storeErrors, 0)
    }
    assert.ok(!logs.join('\n').includes(TLS_PASSWORD), logs.join('\n'))
  } finally {
    await pair.stop()
    await redis.stop()
  }
})

test('rediss:// without the CA: a certificate error, counted and logged without the password; events still handled', async () => {
  const redis = await redisServer({ tls: certs, password: TLS_PASSWORD })
  // The bundled roots alone, and with an unrelated CA: neither trusts the server.
  for (const tls of [undefined, { caPem: FeishuEmulator.generateTestCertificates().caPem }]) {
    const logs = []
    const pair = await twoTransports(redis.url, tls, logs)
    try {
      const [first, second] = await pair.deliverTwice(`ev-untrusted-${tls ? 'other-ca' : 'bundled'}`)
      // At least once: handled by both, since the store could not be reached.
      assert.equal(first.code, 200)
      assert.equal(second.code, 200)
      assert.equal(pair.calls.length, 2, pair.calls.join(' | '))
      for (const t of pair.transports) {
        const s = t.status()
        assert.deepEqual(s.store, { kind: 'redis', healthy: false })
        assert.ok(s.counters.storeErrors >= 1, JSON.stringify(s.counters))
      }
      const outage = logs.filter((l) => /dedupe store is unreachable/.test(l))
      assert.equal(outage.length, 2, `one line per transport:\n${logs.join('\n')}`)
      for (const line of outage) {
        assert.match(line, /^warn /)
        assert.match(line, /Redis over TLS: its certificate/, line)
        assert.match(line, tls ? /does not verify against the trusted authority/ : /not issued by a trusted authority.*tls\.caPem/, line)
      }
      const seen = JSON.stringify({ logs, status: pair.transports.map((t) => t.status()) })
      assert.ok(!seen.includes(TLS_PASSWORD), seen)
    } finally {
      await pair.stop()
    }
  }
  await redis.stop()
})

test('rediss:// with a wrong password: the server\'s refusal is logged, neither password is', async () => {
  const redis = await redisServer({ tls: certs, password: TLS_PASSWORD })
  const wrong = 'Wr0ng-Tls-Pw-9d2f'
  const url = redis.url.replace(encodeURIComponent(TLS_PASSWORD), wrong)
  assert.notEqual(url, redis.url)
  const logs = []
  const pair = await twoTransports(url, { caPem: certs.caPem }, logs)
  try {
    const [first] = await pair.deliverTwice('ev-wrong-pw')
    assert.equal(first.code, 200)
    const outage = await waitFor(() => logs.find((l) => /dedupe store is unreachable/.test(l)), { what: 'the outage line' })
    // Past TLS (the certificate verified), refused by AUTH.
    assert.match(outage, /WRONGPASS|NOAUTH|AuthenticationFailed|invalid username-password/i, outage)
    assert.doesNotMatch(outage, /certificate/, outage)
    const seen = JSON.stringify({ logs, status: pair.transports.map((t) => t.status()) })
    assert.ok(!seen.includes(wrong), seen)
    assert.ok(!seen.includes(TLS_PASSWORD), seen)
  } finally {
    await pair.stop()
    await redis.stop()
  }
})
