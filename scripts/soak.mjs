// The soak: push many events while the emulator drops, stalls, fails discovery and
// rejects handshakes at random, with re-delivery on; then prove nothing was lost.
//   npm run soak                    # 20 000 events
//   node scripts/soak.mjs --events 3000
// Exits non-zero on any loss. `runSoak` is also used by the test suite in a short form.
import { FeishuTransport, FeishuEmulator } from '../index.js'

export async function runSoak({ events = 20_000, ratePerSec = 1000, seed = Date.now(), log = console.log, timeoutMs = 600_000 } = {}) {
  let state = seed >>> 0 || 1
  const random = () => {
    // xorshift32: reproducible runs from a printed seed
    state ^= state << 13; state >>>= 0
    state ^= state >>> 17
    state ^= state << 5; state >>>= 0
    return state / 4294967296
  }
  const started = Date.now()
  const emulator = await FeishuEmulator.start({ ackDeadlineMs: 500, maxRedeliveries: 1000 })
  const seen = new Map()
  let handled = 0
  const transport = new FeishuTransport({
    appId: emulator.appId,
    appSecret: emulator.appSecret,
    domain: emulator.domain,
    logLevel: 'silent', proxy: null,
    pingIntervalMs: 200,
    reconnect: { initialDelayMs: 10, maxDelayMs: 200 },
    timeouts: { discoveryMs: 1000, handshakeMs: 1000, pongMs: 400, closeMs: 300 },
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

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--events')
  const events = i > 0 ? Number(process.argv[i + 1]) : 20_000
  const j = process.argv.indexOf('--seed')
  const seed = j > 0 ? Number(process.argv[j + 1]) : Date.now()
  runSoak({ events, seed }).then(
    () => process.exit(0),
    (e) => { console.error(e.message); process.exit(1) },
  )
}
