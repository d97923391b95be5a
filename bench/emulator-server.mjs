// The benchmark's server process: a FeishuEmulator that pushes from Rust, driven over IPC
// by bench/run.mjs. It runs in its own process so its CPU is never counted as the
// client's. One emulator per round (`start` closes the previous one), so every round
// starts from empty tables.
//
// Commands (process.send / on('message'), each `{id, cmd, ...}`, answered with
// `{id, ok, result | error}`):
//   start {options}             → {domain, apps}
//   waitConnections {n, timeoutMs}
//   push {count, payloadBytes, fragments, maxInFlight, ratePerSec, apps?, timeoutMs, latency?}
//        → {count, elapsedMs, eventsPerSec, stats, cpuMs, latency?}
//        `apps`: spread the count over these app ids (one pushMany each, in parallel,
//        maxInFlight split between them). Elapsed runs from the first push to the last
//        200 ack. `latency: {skip}`: p50/p99/max of the acks' latencyUs, the first `skip`
//        acks discarded as warm-up.
//   recovery {payloadBytes, timeoutMs} → {ms, dropped}: drop every connection, push one
//        event at once, wait for its 200 ack; ms = ack time − drop time.
//   warm {timeoutMs}            → pushes one event and waits for its ack
//   stats                       → emulator.stats()
//   close                       → closes the emulator
//   exit
import { performance } from 'node:perf_hooks'
import { FeishuEmulator } from '../emulator.js'
import { percentile } from './stats.mjs'

let emulator = null

function cpuMs(before) {
  const d = process.cpuUsage(before)
  return (d.user + d.system) / 1000
}

/** A payload of about `bytes` bytes with a unique event id (for single pushes). */
function payload(bytes, appId) {
  const id = `bench${Date.now().toString(16)}${Math.random().toString(16).slice(2)}`
  const head = {
    schema: '2.0',
    header: { event_id: id, event_type: 'im.message.receive_v1', create_time: String(Date.now()), token: 'bench', app_id: appId, tenant_key: 'bench' },
    event: { message: { message_id: `om_${id}`, chat_id: 'oc_bench', message_type: 'text', content: '' } },
  }
  const base = JSON.stringify(head).length
  head.event.message.content = 'x'.repeat(Math.max(0, bytes - base))
  return head
}

const handlers = {
  async start({ options }) {
    if (emulator) await emulator.close()
    emulator = await FeishuEmulator.start(options)
    return { domain: emulator.domain, appId: emulator.appId }
  },

  async waitConnections({ n, timeoutMs = 20_000 }) {
    await emulator.waitForConnections(n, { timeoutMs })
    return { connections: emulator.connections().length }
  },

  async warm({ timeoutMs = 20_000, apps }) {
    const ids = (apps && apps.length ? apps : [emulator.appId]).map((appId) => emulator.pushEvent(payload(512, appId), { appId }))
    for (const id of ids) await emulator.waitForAck(id, { timeoutMs, code: 200 })
    return { warmed: ids.length }
  },

  /**
   * Warm-up pushes from JavaScript, with event ids unique across calls (pushMany numbers
   * its generated event ids from 0 on every call, so a second pushMany on one emulator
   * would repeat the first one's ids and a deduplicating client would skip them).
   */
  async warmMany({ count, payloadBytes = 512, fragments = 1, maxInFlight = 256, apps, timeoutMs = 120_000 }) {
    const ids = apps && apps.length ? apps : [emulator.appId]
    let sent = 0
    while (sent < count) {
      const n = Math.min(maxInFlight, count - sent)
      for (let i = 0; i < n; i++) {
        const appId = ids[(sent + i) % ids.length]
        emulator.pushEvent(payload(payloadBytes, appId), { appId, fragments })
      }
      sent += n
      await emulator.waitForAllAcked({ timeoutMs })
    }
    return { warmed: sent }
  },

  async push({ count, payloadBytes = 512, fragments = 1, maxInFlight, ratePerSec, apps, timeoutMs = 600_000, latency }) {
    const before = emulator.stats()
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    if (apps && apps.length > 1) {
      const per = Math.floor(count / apps.length)
      const rest = count - per * apps.length
      const inFlight = maxInFlight ? Math.max(1, Math.floor(maxInFlight / apps.length)) : undefined
      const rate = ratePerSec ? ratePerSec / apps.length : undefined
      await Promise.all(apps.map((appId, i) => emulator.pushMany({
        count: per + (i < rest ? 1 : 0), payloadBytes, fragments, maxInFlight: inFlight, ratePerSec: rate, appId,
      })))
    } else {
      await emulator.pushMany({ count, payloadBytes, fragments, maxInFlight, ratePerSec, appId: apps && apps[0] })
    }
    await emulator.waitForAllAcked({ timeoutMs })
    const elapsedMs = performance.now() - t0
    const emulatorCpuMs = cpuMs(cpu0)
    const after = emulator.stats()
    const result = {
      count,
      elapsedMs,
      eventsPerSec: (count / elapsedMs) * 1000,
      pushed: after.pushed - before.pushed,
      acksOk: after.acksOk - before.acksOk,
      acksFailed: after.acksFailed - before.acksFailed,
      redeliveries: after.redeliveries - before.redeliveries,
      pending: after.pending,
      emulatorCpuMs,
    }
    if (latency) {
      const acks = emulator.acks().filter((a) => a.code === 200 && a.delivery === 1)
      const lat = acks.slice(latency.skip ?? 100).map((a) => a.latencyUs).sort((a, b) => a - b)
      result.latency = {
        samples: lat.length,
        p50Us: percentile(lat, 50),
        p99Us: percentile(lat, 99),
        maxUs: lat.length ? lat[lat.length - 1] : null,
      }
    }
    return result
  },

  async recovery({ payloadBytes = 512, probeMs = 5, timeoutMs = 30_000, lostWaitMs = 1_000 }) {
    const appId = emulator.appId
    const old = new Set(emulator.connections().map((c) => c.id))
    const tDrop = Date.now()
    const dropped = emulator.dropConnections(null, true)
    // A closing connection stays registered until its task ends; probe only once it is
    // gone, so no probe goes to the dying socket. The clock runs from the drop.
    const until = Date.now() + 2000
    while (emulator.connections().some((c) => old.has(c.id)) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 1))
    }
    // Probe every `probeMs` until one is acked 200: probes pushed while no socket is up
    // wait in the emulator and are delivered the moment a new socket connects. A client
    // that drops events arriving right after its reconnect (before its listener is
    // attached) recovers on the next probe; the probes it dropped are counted as lost.
    let first = null
    const probes = []
    const deadline = Date.now() + timeoutMs
    while (!first && Date.now() < deadline) {
      const id = emulator.pushEvent(payload(payloadBytes, appId), { appId })
      const acked = emulator.waitForAck(id, { timeoutMs: timeoutMs + lostWaitMs, code: 200 }).then(
        (a) => { if (!first || a.at < first.at) first = a; return true },
        () => false,
      )
      probes.push(acked)
      await new Promise((r) => setTimeout(r, probeMs))
    }
    if (!first) throw new Error(`no probe was acked within ${timeoutMs} ms of the drop`)
    const tFirst = Date.now()
    // A probe still unacked lostWaitMs after the first ack was dropped by the client
    // (re-delivery only comes after the ack deadline).
    const settled = await Promise.all(probes.map((p) => Promise.race([p, new Promise((r) => setTimeout(() => r(false), Math.max(0, lostWaitMs - (Date.now() - tFirst))))])))
    return { ms: first.at - tDrop, dropped, probes: probes.length, lost: settled.filter((x) => !x).length }
  },

  async stats() {
    return emulator.stats()
  },

  async close() {
    if (emulator) await emulator.close()
    emulator = null
    return {}
  },

  async exit() {
    if (emulator) await emulator.close()
    setImmediate(() => process.exit(0))
    return {}
  },
}

process.on('message', async (msg) => {
  const h = handlers[msg.cmd]
  try {
    if (!h) throw new Error(`unknown command ${msg.cmd}`)
    const result = await h(msg)
    process.send({ id: msg.id, ok: true, result })
  } catch (e) {
    process.send({ id: msg.id, ok: false, error: String(e && e.stack ? e.stack : e) })
  }
})
process.on('disconnect', () => process.exit(0))
process.send({ ready: true })
