// The soak: push many events while the emulator drops, stalls, fails discovery and
// rejects handshakes at random, with re-delivery on; then prove nothing was lost.
//   npm run soak                    # 20 000 events, one process, one connection
//   node scripts/soak.mjs --events 3000
//   npm run soak -- --processes 3 --connections 2 [--store <dedupe.store>]
// The last form runs one app in several child processes with several connections each
// (`runMultiSoak`), kills one child with SIGKILL mid-run and starts it again. Exits
// non-zero on any loss. `runSoak` and `runMultiSoak` are also used by the test suite in
// a short form.
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { FeishuTransport, FeishuEmulator } from '../index.js'

/** xorshift32 over `seed`: reproducible runs from a printed seed. */
function randomFrom(seed) {
  let state = seed >>> 0 || 1
  return () => {
    state ^= state << 13; state >>>= 0
    state ^= state >>> 17
    state ^= state << 5; state >>>= 0
    return state / 4294967296
  }
}

/** The transport options of every soak: quick pings, reconnects and timeouts. */
function soakOptions(emulator) {
  return {
    appId: emulator.appId,
    appSecret: emulator.appSecret,
    domain: emulator.domain,
    logLevel: 'silent', proxy: null,
    pingIntervalMs: 200,
    reconnect: { initialDelayMs: 10, maxDelayMs: 200 },
    timeouts: { discoveryMs: 1000, handshakeMs: 1000, pongMs: 400, closeMs: 300 },
  }
}

export async function runSoak({ events = 20_000, ratePerSec = 1000, seed = Date.now(), log = console.log, timeoutMs = 600_000 } = {}) {
  const random = randomFrom(seed)
  const started = Date.now()
  const emulator = await FeishuEmulator.start({ ackDeadlineMs: 500, maxRedeliveries: 1000 })
  const seen = new Map()
  let handled = 0
  const transport = new FeishuTransport({
    ...soakOptions(emulator),
    onEvent: async (e) => {
      seen.set(e.eventId, (seen.get(e.eventId) || 0) + 1)
      handled++
      if (random() < 0.05) await new Promise((r) => setTimeout(r, random() * 20))
    },
  })
  const running = transport.start()
  const faults = { drop: 0, dropNoClose: 0, stall: 0, discovery: 0, handshake: 0 }
  let chaos = true
  const chaosLoop = (async () => {
    while (chaos) {
      await new Promise((r) => setTimeout(r, 50 + random() * 250))
      if (!chaos) break
      const r = random()
      if (r < 0.3) { emulator.dropConnections(null, true); faults.drop++ }
      else if (r < 0.5) { emulator.dropConnections(null, false); faults.dropNoClose++ }
      else if (r < 0.65) { emulator.stall(); faults.stall++ }
      else if (r < 0.85) { emulator.failDiscovery({ count: 1, kind: 'code', code: 1, msg: 'busy' }); faults.discovery++ }
      else { emulator.rejectHandshakes({ count: 1, httpStatus: 500, handshakeStatus: 500 }); faults.handshake++ }
    }
  })()
  let ok = false
  try {
    // Paced, so the chaos has time to strike while events are in flight.
    await emulator.pushMany({ count: events, payloadBytes: 512, maxInFlight: 500, ratePerSec })
    chaos = false
    await chaosLoop
    emulator.clearFaults()
    await emulator.waitForAllAcked({ timeoutMs: Math.max(10_000, timeoutMs - (Date.now() - started)) })
    await transport.close()
    const result = await running
    const stats = emulator.stats()
    const twice = [...seen.values()].filter((n) => n > 1).length
    const s = transport.status()
    const figures = {
      seed,
      events,
      handled,
      distinctHandled: seen.size,
      handledTwice: twice,
      duplicatesSuppressed: s.counters.duplicates,
      redeliveries: stats.redeliveries,
      reconnects: s.counters.reconnects,
      faults,
      faultsInjected: Object.values(faults).reduce((a, b) => a + b, 0),
      pending: stats.pending,
      result: result.reason,
      seconds: ((Date.now() - started) / 1000).toFixed(1),
    }
    log(`soak: ${JSON.stringify(figures)}`)
    const problems = []
    if (seen.size !== events) problems.push(`handled ${seen.size} distinct events of ${events}`)
    if (stats.pending !== 0) problems.push(`${stats.pending} events never acked with 200`)
    if (twice !== 0) problems.push(`${twice} events reached the handler twice`)
    if (result.reason !== 'closed') problems.push(`start() settled with ${result.reason}`)
    const injected = Object.values(faults).reduce((a, b) => a + b, 0)
    if (injected === 0) problems.push('no fault was injected: the run proves nothing')
    if (problems.length) throw new Error(`soak failed: ${problems.join('; ')}`)
    ok = true
    return figures
  } finally {
    chaos = false
    if (!ok) await transport.close({ force: true }).catch(() => {})
    await emulator.close()
  }
}

/**
 * One app served by `processes` child processes with `connections` sockets each, under
 * the same chaos as `runSoak` aimed at single sockets, plus one child killed with SIGKILL
 * mid-run and started again. Every child reports each handler call to this process
 * before the handler returns, so a handled event is counted even if its child dies
 * before acking it.
 *
 * Passes when every event was acked 200 and reached a handler (none lost) and no event
 * was handled twice inside one process (its dedupe is shared by its connections).
 * Handled twice by different processes is counted and reported: without `store`
 * (memory dedupe, one per process) it cannot be prevented, since Feishu re-delivers an
 * event whose ack was late or lost to any connection of the app. With `store` (passed
 * through as `dedupe.store`, shared by the children) cross-process duplicates fail the run,
 * except those that involve the killed child (the window between a handler's return and
 * its result reaching the store, which a crash can hit).
 */
export async function runMultiSoak({
  processes = 3, connections = 2, store, events = 20_000, ratePerSec = 1000, seed = Date.now(),
  log = console.log, timeoutMs = 600_000, handlerDelayMs = 20,
} = {}) {
  const random = randomFrom(seed)
  const started = Date.now()
  const emulator = await FeishuEmulator.start({ ackDeadlineMs: 500, maxRedeliveries: 1000 })
  const handledBy = new Map() // eventId -> [child number, …]
  const children = new Map() // child number -> ChildProcess
  const failures = []
  // A child that cannot start (an option its transport refuses, such as a `--store` this
  // build does not know) ends the run at once with its own words.
  let childFailed
  const childFailure = new Promise((_, reject) => { childFailed = reject })
  childFailure.catch(() => {})
  const fail = (why) => {
    failures.push(why)
    childFailed(new Error(`soak failed: ${why}`))
  }
  let nextChild = 0
  let killed = null
  const spawnChild = () => {
    const n = nextChild++
    const child = fork(fileURLToPath(import.meta.url), ['--child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.set(n, child)
    child.on('message', (m) => {
      if (m.h) {
        const list = handledBy.get(m.h)
        if (list) list.push(n)
        else handledBy.set(m.h, [n])
      } else if (m.error) {
        fail(`child ${n}: ${m.error}`)
      }
    })
    child.on('exit', (code, signal) => {
      if (code !== 0 && signal !== 'SIGKILL') fail(`child ${n} exited with ${code ?? signal}`)
    })
    child.send({ start: { options: soakOptions(emulator), connections, store, handlerDelayMs, seed: seed + n } })
    return n
  }
  for (let i = 0; i < processes; i++) spawnChild()
  const faults = { drop: 0, dropNoClose: 0, stall: 0, discovery: 0, handshake: 0, sigkill: 0 }
  let chaos = false
  let chaosLoop = Promise.resolve()
  let ok = false
  try {
    await Promise.race([emulator.waitForConnections(processes * connections, { timeoutMs: 30_000 }), childFailure])
    chaos = true
    // One socket at a time: with several per app, the others must keep the app hearing.
    const someConnection = () => {
      const live = emulator.connections()
      return live.length ? live[Math.floor(random() * live.length)].id : null
    }
    chaosLoop = (async () => {
      while (chaos) {
        await new Promise((r) => setTimeout(r, 50 + random() * 250))
        if (!chaos) break
        const r = random()
        const id = someConnection()
        if (id === null) continue
        if (r < 0.3) { emulator.dropConnections(id, true); faults.drop++ }
        else if (r < 0.5) { emulator.dropConnections(id, false); faults.dropNoClose++ }
        else if (r < 0.65) { emulator.stall(id); faults.stall++ }
        else if (r < 0.85) { emulator.failDiscovery({ count: 1, kind: 'code', code: 1, msg: 'busy' }); faults.discovery++ }
        else { emulator.rejectHandshakes({ count: 1, httpStatus: 500, handshakeStatus: 500 }); faults.handshake++ }
      }
    })()
    // SIGKILL one child a third of the way in, and start another in its place.
    const killer = setTimeout(() => {
      killed = Math.floor(random() * processes)
      children.get(killed).kill('SIGKILL')
      faults.sigkill++
      spawnChild()
    }, (events / ratePerSec) * 1000 / 3)
    await emulator.pushMany({ count: events, payloadBytes: 512, maxInFlight: 500, ratePerSec })
    clearTimeout(killer)
    chaos = false
    await chaosLoop
    emulator.clearFaults()
    await emulator.waitForAllAcked({ timeoutMs: Math.max(10_000, timeoutMs - (Date.now() - started)) })
    // Every child closes its transport and reports its status.
    const statuses = await Promise.all([...children].filter(([n]) => n !== killed).map(([n, child]) => new Promise((resolve) => {
      child.on('message', (m) => { if (m.closed) resolve({ child: n, ...m.closed }) })
      child.on('exit', () => resolve({ child: n, reason: 'exited' }))
      child.send({ close: true })
    })))
    const stats = emulator.stats()
    const twice = [...handledBy.values()].filter((l) => l.length > 1)
    const sameProcess = twice.filter((l) => new Set(l).size < l.length).length
    const crossProcess = twice.length - sameProcess
    const crossWithKilled = twice.filter((l) => new Set(l).size === l.length && l.includes(killed)).length
    const figures = {
      seed, processes, connections, store: store ?? 'memory', events,
      handlerCalls: [...handledBy.values()].reduce((a, l) => a + l.length, 0),
      distinctHandled: handledBy.size,
      handledTwiceSameProcess: sameProcess,
      handledTwiceAcrossProcesses: crossProcess,
      acrossProcessesWithTheKilledChild: crossWithKilled,
      duplicatesSuppressed: statuses.reduce((a, s) => a + (s.duplicates ?? 0), 0),
      reconnects: statuses.reduce((a, s) => a + (s.reconnects ?? 0), 0),
      redeliveries: stats.redeliveries,
      faults,
      pending: stats.pending,
      results: statuses.map((s) => s.reason),
      seconds: ((Date.now() - started) / 1000).toFixed(1),
    }
    log(`soak: ${JSON.stringify(figures)}`)
    const problems = [...failures]
    if (handledBy.size !== events) problems.push(`handled ${handledBy.size} distinct events of ${events}`)
    if (stats.pending !== 0) problems.push(`${stats.pending} events never acked with 200`)
    if (sameProcess !== 0) problems.push(`${sameProcess} events reached the handler twice in one process`)
    if (store !== undefined && crossProcess - crossWithKilled !== 0) {
      problems.push(`${crossProcess - crossWithKilled} events reached handlers in two live processes despite the shared store`)
    }
    if (statuses.some((s) => s.reason !== 'closed')) problems.push(`start() settled with ${statuses.map((s) => s.reason).join(', ')}`)
    if (faults.sigkill !== 1) problems.push('no child was killed: the run proves less than it says')
    if (problems.length) throw new Error(`soak failed: ${problems.join('; ')}`)
    ok = true
    return figures
  } finally {
    chaos = false
    await chaosLoop
    for (const child of children.values()) {
      if (child.exitCode === null && child.signalCode === null) {
        if (!ok) child.kill('SIGKILL')
        else await new Promise((r) => { child.once('exit', r); setTimeout(() => { child.kill('SIGKILL'); r() }, 5000).unref() })
      }
    }
    await emulator.close()
  }
}

/** A child of `runMultiSoak`: one transport, every handler call reported to the parent. */
function runChild() {
  let transport
  let running
  process.on('message', async (m) => {
    if (m.start) {
      const { options, connections, store, handlerDelayMs, seed } = m.start
      const random = randomFrom(seed)
      try {
        transport = new FeishuTransport({
          ...options,
          connections,
          // Handlers here take at most handlerDelayMs, so a short timeout is safe, and it
          // sets the store's lease (handlerTimeoutMs + 5 s): the SIGKILLed child's claims
          // expire in seconds, not the default's five minutes, and its events are handled
          // by another child within the run.
          handlerTimeoutMs: 2000,
          ...(store !== undefined ? { dedupe: { store } } : {}),
          onEvent: async (e) => {
            if (random() < 0.05) await new Promise((r) => setTimeout(r, random() * handlerDelayMs))
            // Before returning, so a handled event is counted even if this process dies
            // before its ack is sent.
            process.send({ h: e.eventId })
          },
        })
      } catch (e) {
        process.send({ error: `${e.code}: ${e.message}` }, () => process.exit(1))
        return
      }
      running = transport.start().catch((e) => ({ reason: `rejected ${e.code}: ${e.message}` }))
    } else if (m.close) {
      await transport.close()
      const result = await running
      const s = transport.status()
      process.send({ closed: { reason: result.reason, duplicates: s.counters.duplicates, reconnects: s.counters.reconnects } }, () => process.exit(0))
    }
  })
}

if (process.argv.includes('--child')) {
  runChild()
} else if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name) => {
    const i = process.argv.indexOf(`--${name}`)
    return i > 0 ? process.argv[i + 1] : undefined
  }
  const events = Number(arg('events') ?? 20_000)
  const seed = Number(arg('seed') ?? Date.now())
  const multi = ['processes', 'connections', 'store'].some((k) => arg(k) !== undefined)
  const run = multi
    ? runMultiSoak({ events, seed, processes: Number(arg('processes') ?? 3), connections: Number(arg('connections') ?? 2), store: arg('store') })
    : runSoak({ events, seed })
  run.then(
    () => process.exit(0),
    (e) => { console.error(e.message); process.exit(1) },
  )
}
