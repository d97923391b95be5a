// `npm run bench`: the official @larksuiteoapi/node-sdk WSClient against FeishuTransport,
// side by side in one run. The emulator runs in its own process (bench/emulator-server.mjs)
// and pushes from Rust; each client runs in a fresh process of its own (bench/client.mjs)
// that measures its own CPU and peak RSS. Every scenario alternates the clients (official,
// native, official, native, …) for several rounds and reports medians, because the
// machine is shared and noisy.
//
//   node bench/run.mjs                 # the full run; writes bench/RESULTS.md and bench/ratios.svg
//   node bench/run.mjs --quick         # the CI smoke: 1 round, small counts (< 2 min)
//   node bench/run.mjs --no-write      # print only
//   node bench/run.mjs --only 1,3      # some scenarios only (never writes)
//   node bench/run.mjs --only stores   # the dedupe.store section only; rewrites that section
//                                      # of bench/RESULTS.md (with --no-write: print only)
//   node bench/run.mjs --rounds 5      # more rounds
//   node bench/run.mjs --store sqlite  # the native client's dedupe.store in the scenarios:
//                                      # memory (default), sqlite (a fresh file per client)
//                                      # or a redis:// URL; composes with --only (never
//                                      # writes; the stores section is then not run)
//   node bench/run.mjs --native-only   # skip the official client
//
// The stores section ("dedupe.store: the cost of a durable store", native client only)
// runs the burst and 1 000 events/s with each store: memory, sqlite (a fresh temp file per
// client) and redis (a redis-server this script starts on a free loopback port, if
// `redis-server` is on PATH; else that row says why it was skipped). Redis round trips per
// event come from the server's INFO commandstats before and after each measured window.
//
// Scenarios 7 and 8 (steady rates) add a fourth column, the Node floor (bench/node-floor.mjs:
// a plain Node TCP client woken once per event, what any JavaScript handler costs at least),
// and a third client, `raw`: examples/raw_client.rs, a
// Rust client with no JavaScript that acks each event the moment it reads it (the floor).
// A full run builds it (`cargo build --release --example raw_client`); `--quick` uses it
// only if it is built already.
//
// It exits non-zero if a client failed to deliver every event or a step timed out.
// Targets are reported (PASS/MISS), never asserted.
import { execFile, execFileSync, fork, spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'

const here = path.dirname(fileURLToPath(import.meta.url))
const RAW_CLIENT = path.join(here, '..', 'target', 'release', 'examples', 'raw_client')

const { values: argv } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    only: { type: 'string' },
    rounds: { type: 'string' },
    store: { type: 'string', default: 'memory' },
    'native-only': { type: 'boolean', default: false },
  },
})
const quick = argv.quick
const only = argv.only ? new Set(argv.only.split(',').map((x) => x.trim())) : null
const runs = (n) => !only || only.has(String(n))
const write = !argv['no-write'] && !only && argv.store === 'memory' && !argv['native-only']
// The stores section compares the stores itself: not run when --store changes the scenarios'.
const runStores = runs('stores') && argv.store === 'memory'
// `--only stores` alone rewrites just that section of bench/RESULTS.md.
const writeStoresOnly = !argv['no-write'] && only && only.size === 1 && only.has('stores') && runStores

/** The native transport's reconnect policy in the recovery scenario (and everywhere). */
const INITIAL_DELAY_MS = 100
/** The ClientConfig of the recovery scenario: the official SDK waits random(0..nonce) s. */
const RECOVERY_CLIENT_CONFIG = { reconnectNonce: 1, reconnectInterval: 1 }
const KINDS = argv['native-only'] ? ['native'] : ['official', 'native']
// `floor`: bench/node-floor.mjs, what one wake of a Node process per event costs with
// nothing else done (its own socket and pusher, not the emulator).
const STEADY_KINDS = argv['native-only'] ? ['native', 'raw', 'floor'] : ['official', 'native', 'raw', 'floor']

const FULL = {
  rounds: 3,
  s1: { counts: { official: 20_000, native: 100_000 }, warmup: 2_000, payloadBytes: 512, fragments: 1, maxInFlight: 256 },
  s2: { counts: { official: 1_200, native: 6_000 }, warmup: 60, payloadBytes: 200 * 1024, fragments: 4, maxInFlight: 32 },
  s3: { count: 10_000, ratePerSec: 1_000, skip: 100, warmup: 500 },
  s4: { idleMs: 30_000, settleMs: 10_000 },
  s5: { drops: 5, gapMs: 300 },
  s6: { transports: 10, counts: { official: 20_000, native: 100_000 }, warmup: 2_000, payloadBytes: 512, maxInFlight: 256 },
  s7: { count: 3_000, ratePerSec: 100, skip: 100, warmup: 500 },
  s8: { count: 10_000, ratePerSec: 1_000, skip: 100, warmup: 500 },
  stores: {
    burst: { count: 50_000, warmup: 2_000, payloadBytes: 512, maxInFlight: 256, skip: 0 },
    steady: { count: 5_000, ratePerSec: 1_000, warmup: 500, payloadBytes: 512, skip: 100 },
  },
}
const QUICK = {
  rounds: 1,
  s1: { counts: { official: 2_000, native: 2_000 }, warmup: 200, payloadBytes: 512, fragments: 1, maxInFlight: 256 },
  s2: { counts: { official: 60, native: 60 }, warmup: 4, payloadBytes: 200 * 1024, fragments: 4, maxInFlight: 32 },
  s3: { count: 1_000, ratePerSec: 1_000, skip: 100, warmup: 100 },
  s4: { idleMs: 2_000, settleMs: 300 },
  s5: { drops: 1, gapMs: 200 },
  s6: { transports: 10, counts: { official: 2_000, native: 2_000 }, warmup: 200, payloadBytes: 512, maxInFlight: 256 },
  s7: { count: 100, ratePerSec: 100, skip: 10, warmup: 50 },
  s8: { count: 500, ratePerSec: 1_000, skip: 50, warmup: 100 },
  stores: {
    burst: { count: 2_000, warmup: 200, payloadBytes: 512, maxInFlight: 256, skip: 0 },
    steady: { count: 500, ratePerSec: 1_000, warmup: 100, payloadBytes: 512, skip: 50 },
  },
}
const cfg = quick ? QUICK : FULL
if (argv.rounds) cfg.rounds = Number(argv.rounds)

// ---------------------------------------------------------------------------------------
// Processes

function rpc(child, name) {
  let next = 1
  const waiting = new Map()
  let readyResolve
  const ready = new Promise((resolve) => { readyResolve = resolve })
  child.on('message', (m) => {
    if (m.ready) return readyResolve(m)
    const w = waiting.get(m.id)
    if (!w) return
    waiting.delete(m.id)
    if (m.ok) w.resolve(m.result)
    else w.reject(new Error(`${name}: ${m.error}`))
  })
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => {
    for (const w of waiting.values()) w.reject(new Error(`${name} exited (code ${code}, signal ${signal})`))
    waiting.clear()
    resolve(code)
  }))
  const call = (cmd, params = {}, timeoutMs = 600_000) => new Promise((resolve, reject) => {
    const id = next++
    const timer = setTimeout(() => {
      waiting.delete(id)
      reject(new Error(`${name}: '${cmd}' timed out after ${timeoutMs} ms`))
    }, timeoutMs)
    waiting.set(id, {
      resolve: (v) => { clearTimeout(timer); resolve(v) },
      reject: (e) => { clearTimeout(timer); reject(e) },
    })
    child.send({ id, cmd, ...params })
  })
  return { call, ready, exited, child }
}

function withTimeout(promise, ms, what) {
  let timer
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms) }),
  ])
}

// The emulator keeps two tokio workers (the addon's default is one, src/lib.rs): its
// pusher, writer and ack reader run in parallel, so it stays off the critical path.
const EMULATOR_ENV = { ...process.env, TOKIO_WORKER_THREADS: process.env.EMULATOR_WORKER_THREADS || '2' }
const server = rpc(fork(path.join(here, 'emulator-server.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: EMULATOR_ENV }), 'emulator')
await withTimeout(server.ready, 30_000, 'emulator process start')

/** `--store` as the client's `dedupe.store`: `sqlite` is a fresh file per client. */
function storeOption(store) {
  if (store !== 'sqlite') return { store, files: [] }
  const file = path.join(os.tmpdir(), `feishu-bench-${process.pid}-${Date.now()}.db`)
  return { store: `sqlite:${file}`, files: [file, `${file}-wal`, `${file}-shm`] }
}

async function spawnClient(kind, domain, apps, transports = 1, store = argv.store) {
  const dedupe = storeOption(store)
  const args = [
    '--client', kind, '--domain', domain,
    '--apps', apps.map((a) => `${a.appId}:${a.appSecret}`).join(','),
    '--transports', String(transports),
    '--initial-delay-ms', String(INITIAL_DELAY_MS),
    '--store', dedupe.store,
  ]
  const c = rpc(fork(path.join(here, 'client.mjs'), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }), `${kind} client`)
  c.files = dedupe.files
  const r = await withTimeout(Promise.race([c.ready, c.exited.then((code) => { throw new Error(`${kind} client exited early (code ${code})`) })]), 60_000, `${kind} client start`)
  c.connectMs = r.connectMs
  return c
}

async function stopClient(c) {
  await c.call('exit', {}, 20_000).catch(() => c.child.kill('SIGKILL'))
  await withTimeout(c.exited, 20_000, 'client exit').catch(() => c.child.kill('SIGKILL'))
  for (const f of c.files) rmSync(f, { force: true })
}

/** Ten app ids the official SDK accepts (`cli_` + 16 hex digits). */
function makeApps(n) {
  return Array.from({ length: n }, (_, i) => ({ appId: `cli_b0e1c2d3e4f5a6${(0x10 + i).toString(16)}`, appSecret: `bench-secret-${i}` }))
}

async function startEmulator(apps, clientConfig) {
  return server.call('start', { options: { apps, clientConfig, ackDeadlineMs: 60_000, maxRedeliveries: 3 } })
}

// ---------------------------------------------------------------------------------------
// Scenarios. Each returns one round's figures for one client.

const problems = []

function checkDelivery(label, count, push, client) {
  const ok = push.pending === 0 && push.acksOk >= count && client.handled >= count
  if (!ok) problems.push(`${label}: ${client.handled} handled, ${push.acksOk} acked 200, ${push.pending} pending of ${count}`)
  return ok
}

/** Pushes `count` events at a connected client and measures both sides. */
async function loadRound(label, kind, { apps, transports = 1, count, warmup, payloadBytes, fragments = 1, maxInFlight, ratePerSec, latencySkip, store, window }) {
  const { domain } = await startEmulator(apps)
  const client = await spawnClient(kind, domain, apps, transports, store)
  try {
    await server.call('waitConnections', { n: transports })
    const appIds = apps.map((a) => a.appId)
    if (warmup) {
      // Not measured: lets both JITs warm up on the same path.
      await server.call('warmMany', { count: warmup, payloadBytes, fragments, maxInFlight: maxInFlight || 256, apps: appIds })
    }
    const before = await client.call('end')
    const opened = window ? await window.open() : null
    await client.call('begin')
    const push = await server.call('push', {
      count, payloadBytes, fragments, maxInFlight, ratePerSec, apps: appIds, timeoutMs: 300_000,
      latency: latencySkip !== undefined ? { skip: latencySkip + (warmup || 0) } : undefined,
    })
    const c = await client.call('end')
    const closed = window ? await window.close(opened, count) : null
    const delivered = checkDelivery(`${label} ${kind}`, count, push, c)
    return {
      ...closed,
      count,
      delivered,
      eventsPerSec: push.eventsPerSec,
      elapsedMs: push.elapsedMs,
      cpuMsPer1k: (c.cpuMs / count) * 1000,
      cpuMs: c.cpuMs,
      peakRssMB: c.peakRssBytes / 2 ** 20,
      rssAfterWarmupMB: before.rssBytes / 2 ** 20,
      emulatorCpuMs: push.emulatorCpuMs,
      redeliveries: push.redeliveries,
      latency: push.latency,
    }
  } finally {
    await stopClient(client)
  }
}

const scenarios = [
  {
    n: 1,
    name: 'Burst of 512-byte events',
    describe: (s) => `${s.counts.official.toLocaleString('en')} (official) / ${s.counts.native.toLocaleString('en')} (native) events of ${s.payloadBytes} B per round after ${s.warmup} warm-up events, at most ${s.maxInFlight} in flight (emulator \`pushMany\`)`,
    run: (kind, s) => loadRound('scenario 1', kind, { apps: makeApps(1), count: s.counts[kind], warmup: s.warmup, payloadBytes: s.payloadBytes, fragments: s.fragments, maxInFlight: s.maxInFlight }),
  },
  {
    n: 2,
    name: '200 KB events in 4 fragments',
    describe: (s) => `${s.counts.official.toLocaleString('en')} (official) / ${s.counts.native.toLocaleString('en')} (native) events of ${s.payloadBytes / 1024} KB in ${s.fragments} fragments per round after ${s.warmup} warm-up events, at most ${s.maxInFlight} in flight`,
    run: (kind, s) => loadRound('scenario 2', kind, { apps: makeApps(1), count: s.counts[kind], warmup: s.warmup, payloadBytes: s.payloadBytes, fragments: s.fragments, maxInFlight: s.maxInFlight }),
  },
  {
    n: 3,
    name: 'Ack latency at 1 000 events/s',
    describe: (s) => `${s.count.toLocaleString('en')} events of 512 B at ${s.ratePerSec} events/s per round after ${s.warmup} warm-up events; latency = push of the event's last fragment → its 200 ack at the emulator; the first ${s.skip} measured acks discarded`,
    run: (kind, s) => loadRound('scenario 3', kind, { apps: makeApps(1), count: s.count, warmup: s.warmup, payloadBytes: 512, ratePerSec: s.ratePerSec, latencySkip: s.skip }),
  },
  {
    n: 4,
    name: 'Idle',
    describe: (s) => `connected, one event handled, ${s.settleMs / 1000} s settle, then ${s.idleMs / 1000} s idle; CPU % = client CPU time / wall time (server ping interval 120 s, as Feishu's default). The settle keeps V8's one-off memory-reducer GC, which runs about 8 s after a process's last burst of allocation, out of the steady-state figure for both clients (bench/NOTES.md)`,
    run: async (kind, s) => {
      const apps = makeApps(1)
      const { domain } = await startEmulator(apps)
      const client = await spawnClient(kind, domain, apps)
      try {
        await server.call('waitConnections', { n: 1 })
        await server.call('warm', { apps: [apps[0].appId] })
        await new Promise((r) => setTimeout(r, s.settleMs))
        await client.call('begin')
        await new Promise((r) => setTimeout(r, s.idleMs))
        const c = await client.call('end')
        return { idleCpuPct: (c.cpuMs / c.wallMs) * 100, cpuMs: c.cpuMs, wallMs: c.wallMs, peakRssMB: c.peakRssBytes / 2 ** 20 }
      } finally {
        await stopClient(client)
      }
    },
  },
  {
    n: 5,
    name: 'Recovery after a dropped socket',
    describe: (s) => `${s.drops} drop(s) per round, ${s.gapMs} ms apart: the emulator closes the socket (close frame) and, once the old connection is gone, pushes a probe event every 5 ms until one is acked 200; recovery = drop → the first 200 ack (probes pushed while no socket is up wait in the emulator and are delivered the moment a socket connects). Probes the client received but never acked within 1 s are counted as dropped at reconnect (Feishu would re-deliver them only after its ack deadline). Native: \`reconnect: {initialDelayMs: ${INITIAL_DELAY_MS}}\` (jitter ±20 %, the default). Official: the server's ClientConfig \`ReconnectNonce: ${RECOVERY_CLIENT_CONFIG.reconnectNonce}\` s, \`ReconnectInterval: ${RECOVERY_CLIENT_CONFIG.reconnectInterval}\` s, so it waits random(0..${RECOVERY_CLIENT_CONFIG.reconnectNonce * 1000}) ms before reconnecting (Feishu's default nonce is 30 s); both clients see the same config`,
    run: async (kind, s) => {
      const apps = makeApps(1)
      const { domain } = await startEmulator(apps, RECOVERY_CLIENT_CONFIG)
      const client = await spawnClient(kind, domain, apps)
      try {
        await server.call('waitConnections', { n: 1 })
        await server.call('warm', { apps: [apps[0].appId] })
        const times = []
        let lost = 0
        let probes = 0
        for (let i = 0; i < s.drops; i++) {
          await new Promise((r) => setTimeout(r, s.gapMs))
          const r = await server.call('recovery', { timeoutMs: 30_000 }, 40_000)
          if (r.dropped < 1) problems.push(`scenario 5 ${kind}: no connection to drop`)
          times.push(r.ms)
          lost += r.lost
          probes += r.probes
          await server.call('waitConnections', { n: 1 })
        }
        return { recoveryMs: median(times), recoveryAll: times, probes, lost }
      } finally {
        await stopClient(client)
      }
    },
  },
  {
    n: 6,
    name: 'Ten transports in one process',
    describe: (s) => `${s.transports} apps, ${s.transports} clients of one kind in one process; ${s.counts.official.toLocaleString('en')} (official) / ${s.counts.native.toLocaleString('en')} (native) events of ${s.payloadBytes} B spread evenly over the apps, at most ${s.maxInFlight} in flight in total (${Math.floor(s.maxInFlight / s.transports)} per app)`,
    run: (kind, s) => loadRound('scenario 6', kind, { apps: makeApps(s.transports), transports: s.transports, count: s.counts[kind], warmup: s.warmup, payloadBytes: s.payloadBytes, maxInFlight: s.maxInFlight }),
  },
  ...[[7, 'Steady 100 events/s'], [8, 'Steady 1 000 events/s']].map(([n, name]) => ({
    n,
    name,
    kinds: STEADY_KINDS,
    describe: (s) => `${s.count.toLocaleString('en')} events of 512 B at ${s.ratePerSec.toLocaleString('en')} events/s per round after ${s.warmup} warm-up events (pushed as fast as acked), three clients: official, native, and raw (examples/raw_client.rs: a Rust client with no JavaScript that acks each event as it reads it; its CPU is its own process's, every thread). Latency as in scenario 3; the first ${s.skip} measured acks discarded. Beside them, the Node floor (bench/node-floor.mjs): a plain Node TCP client, with its own pusher at the same rate, that JSON.parses each 512 B event, calls a no-op handler through a promise and writes an ack, woken once per event as every client here is; no client that runs a JavaScript handler per event can cost less. Its ack latency is measured by its own pusher, in JavaScript, not by the emulator, so it also holds that pusher's wake for each ack`,
    run: (kind, s) => kind === 'floor'
      ? floorRound(s)
      : loadRound(`scenario ${n}`, kind, { apps: makeApps(1), count: s.count, warmup: s.warmup, payloadBytes: 512, ratePerSec: s.ratePerSec, latencySkip: s.skip }),
  })),
]

/** One round of the Node floor (bench/node-floor.mjs) at a steady scenario's rate. */
async function floorRound(s) {
  const args = [path.join(here, 'node-floor.mjs'), '--count', String(s.count), '--warmup', String(s.warmup), '--rate', String(s.ratePerSec)]
  const { stdout } = await promisify(execFile)(process.execPath, args, { encoding: 'utf8', timeout: ((s.count + s.warmup) / s.ratePerSec) * 1000 + 60_000 })
  return JSON.parse(stdout.trim().split('\n').pop())
}

// ---------------------------------------------------------------------------------------
// The stores section: the cost of a durable dedupe.store (issue 17), native client only.

/** One command to a redis-server (RESP), its reply as text: `+OK`, `-ERR …` or a bulk string. */
function redisCommand(port, words) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => {
      sock.write(`*${words.length}\r\n${words.map((w) => `$${Buffer.byteLength(w)}\r\n${w}\r\n`).join('')}`)
    })
    let buf = Buffer.alloc(0)
    const done = (v) => { sock.destroy(); resolve(v) }
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d])
      const eol = buf.indexOf('\r\n')
      if (eol < 0) return
      const head = buf.subarray(0, eol).toString()
      if (head[0] !== '$') return done(head)
      const len = Number(head.slice(1))
      if (buf.length >= eol + 2 + len + 2) done(buf.subarray(eol + 2, eol + 2 + len).toString())
    })
    sock.on('error', reject)
    sock.setTimeout(10_000, () => { sock.destroy(); reject(new Error(`redis ${words[0]}: no reply in 10 s`)) })
  })
}

/** A redis-server on a free loopback port, no persistence; `null` and why if there is none. */
async function startRedis() {
  const which = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (which.error) return { skipped: `redis-server is not on PATH (${which.error.code}); Debian/Ubuntu: apt-get install redis-server` }
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)) })
  })
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  const deadline = Date.now() + 10_000
  for (;;) {
    if (await redisCommand(port, ['PING']).catch(() => null) === '+PONG') break
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL')
      return { skipped: `redis-server did not answer PING on 127.0.0.1:${port} (exit code ${proc.exitCode})` }
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    version: (which.stdout.match(/v=(\S+)/) || [])[1] || 'unknown',
    /** `INFO stats commandstats` as numbers: `calls.<command>` and the stats fields. */
    async info() {
      const text = await redisCommand(port, ['INFO', 'stats', 'commandstats'])
      const out = { calls: {} }
      for (const line of text.split('\r\n')) {
        const cmd = line.match(/^cmdstat_([^:]+):calls=(\d+)/)
        if (cmd) out.calls[cmd[1]] = Number(cmd[2])
        const stat = line.match(/^(\w+):(\d+)$/)
        if (stat) out[stat[1]] = Number(stat[2])
      }
      return out
    },
    flush: () => redisCommand(port, ['FLUSHALL']),
    stop() { proc.kill('SIGKILL') },
  }
}

/**
 * A measured window's Redis round trips: the commands the client sent, per event.
 * commandstats also counts the commands a Lua script runs inside the server, which are
 * not round trips: every claim or release script runs one GET (the client itself never
 * sends GET or DEL), and a claim that finds the event free (a GET miss) runs one SET.
 * No handler fails here, so no release script runs. The bench's own INFO is left out.
 */
function redisWindow(redis) {
  return {
    open: () => redis.info(),
    async close(before, events) {
      const after = await redis.info()
      const delta = (name) => (after.calls[name] || 0) - (before.calls[name] || 0)
      const inner = { get: delta('get'), del: delta('del'), set: after.keyspace_misses - before.keyspace_misses }
      const sent = {}
      for (const name of Object.keys(after.calls)) {
        if (name === 'info' || name === 'get' || name === 'del') continue
        const n = delta(name) - (name === 'set' ? inner.set : 0)
        if (n > 0) sent[name] = n
      }
      const total = Object.values(sent).reduce((a, b) => a + b, 0)
      return { roundTripsPerEvent: total / events, roundTrips: sent }
    },
  }
}

const STORE_KINDS = ['memory', 'sqlite', 'redis']
// The section's place in bench/RESULTS.md, so `--only stores` can rewrite it alone.
const STORES_BEGIN = '<!-- stores section: written by bench/run.mjs -->'
const STORES_END = '<!-- end of stores section -->'
// Sections recorded by hand from other runs follow this marker and are kept by every run.
const KEPT = '<!-- kept across runs -->'
const STORE_SCENARIOS = [
  ['burst', (s) => `${s.count.toLocaleString('en')} events of ${s.payloadBytes} B as fast as acked, at most ${s.maxInFlight} in flight, after ${s.warmup.toLocaleString('en')} warm-up events`],
  ['steady', (s) => `${s.count.toLocaleString('en')} events of ${s.payloadBytes} B at ${s.ratePerSec.toLocaleString('en')} events/s after ${s.warmup} warm-up events, the first ${s.skip} measured acks left out of the latency`],
]

/** Runs the section: every store at the burst and at 1 000/s, stores alternating per round. */
async function runStoreSection(s, rounds) {
  const t0 = Date.now()
  const loadStart = os.loadavg().map((x) => x.toFixed(2)).join(' ')
  const redis = await startRedis()
  const results = Object.fromEntries(STORE_KINDS.map((k) => [k, { burst: [], steady: [] }]))
  const lines = []
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const [scenario] of STORE_SCENARIOS) {
        for (const store of STORE_KINDS) {
          if (store === 'redis' && redis.skipped) continue
          const x = s[scenario]
          const started = Date.now()
          if (store === 'redis') await redis.flush()
          const r = await loadRound(`stores ${scenario} ${store}`, 'native', {
            apps: makeApps(1), count: x.count, warmup: x.warmup, payloadBytes: x.payloadBytes,
            maxInFlight: x.maxInFlight, ratePerSec: x.ratePerSec, latencySkip: x.skip,
            store: store === 'redis' ? redis.url : store,
            window: store === 'redis' ? redisWindow(redis) : undefined,
          })
          results[store][scenario].push(r)
          const trips = r.roundTrips ? ` roundTrips/event=${fmt(r.roundTripsPerEvent, 2)} ${JSON.stringify(r.roundTrips)}` : ''
          const line = `stores round ${round} ${scenario.padEnd(6)} ${store.padEnd(6)} events/s=${fmt(r.eventsPerSec)} cpuMsPer1k=${fmt(r.cpuMsPer1k, 1)} p50=${fmt(r.latency && r.latency.p50Us / 1000, 2)}ms p99=${fmt(r.latency && r.latency.p99Us / 1000, 2)}ms peakRssMB=${fmt(r.peakRssMB, 1)}${trips} (${((Date.now() - started) / 1000).toFixed(1)} s)`
          lines.push(line)
          console.log(`  ${line}`)
        }
      }
    }
  } finally {
    if (!redis.skipped) redis.stop()
  }
  return { results, lines, redis, rounds, seconds: (Date.now() - t0) / 1000, loadStart, loadEnd: os.loadavg().map((x) => x.toFixed(2)).join(' ') }
}

/** The figures of the section, medians over rounds: one row per store. */
function storeRows(section) {
  const { results, redis } = section
  const memoryBurst = pick(results.memory.burst, (x) => x.eventsPerSec)
  return STORE_KINDS.map((store) => {
    if (store === 'redis' && redis.skipped) return { store, skipped: redis.skipped }
    const b = results[store].burst
    const st = results[store].steady
    const eventsPerSec = pick(b, (x) => x.eventsPerSec)
    return {
      store,
      eventsPerSec,
      ofMemory: memoryBurst ? eventsPerSec / memoryBurst : null,
      burstCpu: pick(b, (x) => x.cpuMsPer1k),
      burstP50: pick(b, (x) => x.latency && x.latency.p50Us / 1000),
      burstP99: pick(b, (x) => x.latency && x.latency.p99Us / 1000),
      steadyCpu: pick(st, (x) => x.cpuMsPer1k),
      steadyP50: pick(st, (x) => x.latency && x.latency.p50Us / 1000),
      steadyP99: pick(st, (x) => x.latency && x.latency.p99Us / 1000),
      burstTrips: pick(b, (x) => x.roundTripsPerEvent),
      steadyTrips: pick(st, (x) => x.roundTripsPerEvent),
      trips: b.length ? b[0].roundTrips : undefined,
    }
  })
}

/** "SQLite ≥ 0.5× memory burst" (issue 17), as a target row. */
function storeTarget(rows) {
  const sqlite = rows.find((r) => r.store === 'sqlite')
  const ok = sqlite && sqlite.ofMemory !== null ? sqlite.ofMemory >= 0.5 : null
  const memory = rows.find((r) => r.store === 'memory')
  return { name: 'dedupe.store: SQLite burst throughput ≥ 0.5× the memory store\'s', ok, shown: ok === null ? 'not run' : `${fmtRatio(sqlite.ofMemory)} (${fmt(sqlite.eventsPerSec)} vs ${fmt(memory.eventsPerSec)} events/s)` }
}

function storeMarkdown(section, s, command) {
  const rows = storeRows(section)
  const target = storeTarget(rows)
  const md = []
  md.push(STORES_BEGIN)
  md.push('## dedupe.store: the cost of a durable store')
  md.push('')
  md.push(`Native client only (the official client has no durable store), written by \`bench/run.mjs\` (\`${command}\`) on ${new Date().toISOString()}: ${section.rounds} round(s), stores alternating within each round, medians over rounds; ${section.seconds.toFixed(0)} s for this section; load average ${section.loadStart} at its start, ${section.loadEnd} at its end (2 cores shared with other work: compare the stores within this table, not with other runs). Stores: \`memory\`; \`sqlite:<a fresh temp file per client>\` (WAL); ${section.redis.skipped ? `redis skipped: ${section.redis.skipped}` : `\`redis://127.0.0.1:<port>\`, a redis-server ${section.redis.version} this run started on loopback without persistence (flushed before each of its rounds)`}.`)
  md.push('')
  for (const [name, describe] of STORE_SCENARIOS) md.push(`- **${name === 'burst' ? 'Burst' : '1 000/s'}:** ${describe(s[name])}.`)
  md.push('- **Round trips per event** (Redis): the commands the client sent in the measured window, from the server\'s `INFO commandstats` before and after it, divided by the events; commandstats also counts what the claim script runs inside the server (one GET, and one SET for a free event: the GET misses), which is subtracted.')
  md.push('')
  md.push('| store | burst: events/s | × memory | burst: client CPU ms / 1 000 events | burst: ack p50 / p99 ms | 1 000/s: client CPU ms / 1 000 events | 1 000/s: ack p50 / p99 ms | Redis round trips / event (burst; 1 000/s) |')
  md.push('|---|---:|---:|---:|---:|---:|---:|---|')
  for (const r of rows) {
    if (r.skipped) { md.push(`| ${r.store} | skipped: ${r.skipped} | | | | | | |`); continue }
    const trips = r.burstTrips === null ? '–' : `${fmt(r.burstTrips, 2)}; ${fmt(r.steadyTrips, 2)} (${Object.entries(r.trips).sort(([a], [b]) => (a === 'set') - (b === 'set')).map(([k, v]) => `${k.toUpperCase()} ${fmt(v / s.burst.count, 2)}`).join(' + ')} per event in the first round's burst)`
    md.push(`| ${r.store} | ${fmt(r.eventsPerSec)} | ${fmtRatio(r.ofMemory)} | ${fmt(r.burstCpu, 1)} | ${fmt(r.burstP50, 2)} / ${fmt(r.burstP99, 2)} | ${fmt(r.steadyCpu, 1)} | ${fmt(r.steadyP50, 2)} / ${fmt(r.steadyP99, 2)} | ${trips} |`)
  }
  md.push('')
  md.push(`**${status(target.ok)}**: ${target.name}: ${target.shown}.`)
  md.push('')
  md.push('Every round, as the run printed it:')
  md.push('')
  md.push('```')
  md.push(...section.lines)
  md.push('```')
  md.push(STORES_END)
  return md.join('\n')
}

// ---------------------------------------------------------------------------------------
// Statistics and reporting

function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const m = Math.floor(v.length / 2)
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2
}

function pick(rounds, f) {
  return median(rounds.map(f))
}

function fmt(x, digits = 0) {
  if (x === null || x === undefined || !Number.isFinite(x)) return '–'
  return x.toLocaleString('en', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function fmtRatio(r) {
  if (r === null || !Number.isFinite(r)) return '–'
  if (r >= 100) return `${fmt(r, 0)}×`
  if (r >= 10) return `${fmt(r, 1)}×`
  return `${fmt(r, 2)}×`
}

const STEADY_METRICS = [
  ['client CPU ms / 1 000 events', (r) => pick(r, (x) => x.cpuMsPer1k), 1, 'lower'],
  ['ack latency p50 ms', (r) => pick(r, (x) => x.latency && x.latency.p50Us / 1000), 2, 'lower'],
  ['ack latency p99 ms', (r) => pick(r, (x) => x.latency && x.latency.p99Us / 1000), 2, 'lower'],
  ['ack latency max ms', (r) => pick(r, (x) => x.latency && x.latency.maxUs / 1000), 2, 'lower'],
  ['peak RSS MB', (r) => pick(r, (x) => x.peakRssMB), 1, 'lower'],
]

/** Metric rows of a scenario: [label, value(rounds), digits, better ('higher'|'lower')]. */
const METRICS = {
  1: [
    ['events/s', (r) => pick(r, (x) => x.eventsPerSec), 0, 'higher'],
    ['client CPU ms / 1 000 events', (r) => pick(r, (x) => x.cpuMsPer1k), 1, 'lower'],
    ['peak RSS MB', (r) => pick(r, (x) => x.peakRssMB), 1, 'lower'],
    ['emulator CPU ms / 1 000 events', (r) => pick(r, (x) => (x.emulatorCpuMs / x.count) * 1000), 1, null],
  ],
  2: [
    ['events/s', (r) => pick(r, (x) => x.eventsPerSec), 0, 'higher'],
    ['client CPU ms / 1 000 events', (r) => pick(r, (x) => x.cpuMsPer1k), 0, 'lower'],
    ['peak RSS MB', (r) => pick(r, (x) => x.peakRssMB), 1, 'lower'],
    ['emulator CPU ms / 1 000 events', (r) => pick(r, (x) => (x.emulatorCpuMs / x.count) * 1000), 0, null],
  ],
  3: [
    ['ack latency p50 ms', (r) => pick(r, (x) => x.latency && x.latency.p50Us / 1000), 2, 'lower'],
    ['ack latency p99 ms', (r) => pick(r, (x) => x.latency && x.latency.p99Us / 1000), 2, 'lower'],
    ['ack latency max ms', (r) => pick(r, (x) => x.latency && x.latency.maxUs / 1000), 2, 'lower'],
    ['client CPU ms / 1 000 events', (r) => pick(r, (x) => x.cpuMsPer1k), 1, 'lower'],
    ['peak RSS MB', (r) => pick(r, (x) => x.peakRssMB), 1, 'lower'],
  ],
  4: [
    ['idle CPU %', (r) => pick(r, (x) => x.idleCpuPct), 3, 'lower'],
    ['client CPU ms in the idle window', (r) => pick(r, (x) => x.cpuMs), 1, 'lower'],
    ['peak RSS MB', (r) => pick(r, (x) => x.peakRssMB), 1, 'lower'],
  ],
  5: [
    ['recovery ms (median of all drops)', (r) => median(r.flatMap((x) => x.recoveryAll)), 0, 'lower'],
    ['recovery ms, max', (r) => Math.max(...r.flatMap((x) => x.recoveryAll)), 0, 'lower'],
    ['probes dropped by the client at reconnect (total)', (r) => r.reduce((a, x) => a + x.lost, 0), 0, null],
  ],
  7: STEADY_METRICS,
  8: STEADY_METRICS,
  6: [
    ['events/s (all apps)', (r) => pick(r, (x) => x.eventsPerSec), 0, 'higher'],
    ['client CPU ms / 1 000 events', (r) => pick(r, (x) => x.cpuMsPer1k), 1, 'lower'],
    ['peak RSS MB', (r) => pick(r, (x) => x.peakRssMB), 1, 'lower'],
  ],
}

function scenarioTable(n, rounds) {
  const rows = []
  for (const [label, f, digits, better] of METRICS[n]) {
    // --native-only runs no official rounds: its column is empty, not a crash.
    const o = rounds.official ? f(rounds.official) : null
    const v = f(rounds.native)
    const ratio = o && v !== null ? v / o : null
    const raw = rounds.raw && rounds.raw.length ? f(rounds.raw) : undefined
    const rawRatio = raw && v !== null ? v / raw : null
    // The Node floor's latency comes from its own pusher, not the emulator (see the
    // scenario's description); its CPU and memory are measured as the clients' are.
    const floor = rounds.floor && rounds.floor.length ? f(rounds.floor) : undefined
    const floorRatio = floor && v !== null ? v / floor : null
    rows.push({ label, official: o, native: v, ratio, raw, rawRatio, floor, floorRatio, digits, better })
  }
  return rows
}

function targets(tables) {
  const get = (n, label) => tables[n] && tables[n].find((r) => r.label === label)
  const t = []
  const add = (name, row, ok, shown) => t.push({ name, ok: row ? ok : null, shown: row ? shown : 'not run' })
  let r = get(1, 'events/s')
  add('Scenario 1 throughput ≥ 5× official', r, r && r.ratio >= 5, r && fmtRatio(r.ratio))
  r = get(1, 'client CPU ms / 1 000 events')
  add('Scenario 1 client CPU per event ≤ 1/5 of official', r, r && r.ratio <= 0.2, r && `${fmtRatio(r.ratio)} (${fmt(r.native, 1)} vs ${fmt(r.official, 1)} ms / 1 000)`)
  r = get(2, 'events/s')
  add('Scenario 2 throughput ≥ 5× official', r, r && r.ratio >= 5, r && fmtRatio(r.ratio))
  r = get(3, 'ack latency p99 ms')
  add('p99 ack latency at 1 000/s ≤ 2 ms and below official', r, r && r.native <= 2 && r.native < r.official, r && `${fmt(r.native, 2)} ms vs ${fmt(r.official, 2)} ms`)
  const rss = [1, 2, 3, 6].map((n) => [n, get(n, 'peak RSS MB')]).filter(([, x]) => x)
  t.push({
    name: 'Peak RSS below official at the same load (scenarios 1, 2, 3, 6)',
    ok: rss.length ? rss.every(([, x]) => x.native < x.official) : null,
    shown: rss.length ? rss.map(([n, x]) => `S${n}: ${fmt(x.native, 0)} vs ${fmt(x.official, 0)} MB`).join('; ') : 'not run',
  })
  for (const n of [7, 8]) {
    r = get(n, 'client CPU ms / 1 000 events')
    const rate = n === 7 ? '100/s' : '1 000/s'
    add(`Scenario ${n} client CPU per event at ${rate} ≤ 2× the raw Rust client's`, r && r.raw !== undefined ? r : null, r && r.rawRatio <= 2, r && `${fmtRatio(r.rawRatio)} (${fmt(r.native, 1)} vs raw ${fmt(r.raw, 1)} ms / 1 000; official ${fmt(r.official, 1)}${r.floor ? `; Node floor ${fmt(r.floor, 1)}, native / floor ${fmtRatio(r.floorRatio)}` : ''})`)
  }
  r = get(8, 'ack latency p99 ms')
  add('Scenario 8 ack p99 at 1 000/s ≤ 2× the raw Rust client\'s', r && r.raw !== undefined ? r : null, r && r.rawRatio <= 2, r && `${fmtRatio(r.rawRatio)} (${fmt(r.native, 2)} vs raw ${fmt(r.raw, 2)} ms; official ${fmt(r.official, 2)}${r.floor ? `; Node floor ${fmt(r.floor, 2)}, by its own pusher` : ''}; max ${fmt(get(8, 'ack latency max ms').native, 2)} vs raw ${fmt(get(8, 'ack latency max ms').raw, 2)} ms)`)
  r = get(4, 'idle CPU %')
  add('Idle CPU ≤ 0.1 %', r, r && r.native <= 0.1, r && `${fmt(r.native, 3)} %`)
  r = get(5, 'recovery ms (median of all drops)')
  add(`Recovery median ≤ initialDelayMs + 100 = ${INITIAL_DELAY_MS + 100} ms`, r, r && r.native <= INITIAL_DELAY_MS + 100, r && `${fmt(r.native, 0)} ms (official ${fmt(r.official, 0)} ms)`)
  return t
}

function machine() {
  const sh = (cmd, args) => { try { return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() } catch { return 'unknown' } }
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  const model = (cpuinfo.match(/^model name\s*:\s*(.*)$/m) || [])[1] || 'unknown'
  const mem = (readFileSync('/proc/meminfo', 'utf8').match(/^MemTotal:\s+(\d+) kB/m) || [])[1]
  return {
    nproc: sh('nproc', []),
    cpu: model,
    memory: mem ? `${(Number(mem) / 2 ** 20).toFixed(1)} GiB` : 'unknown',
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    rust: sh('rustc', ['--version']),
    sdk: JSON.parse(readFileSync(path.join(here, '..', 'node_modules', '@larksuiteoapi', 'node-sdk', 'package.json'), 'utf8')).version,
    addon: JSON.parse(readFileSync(path.join(here, '..', 'package.json'), 'utf8')).version,
    commit: sh('git', ['-C', path.join(here, '..'), 'rev-parse', '--short', 'HEAD']),
    loadStart: os.loadavg().map((x) => x.toFixed(2)).join(' '),
  }
}

// ---------------------------------------------------------------------------------------
// The SVG chart: native/official per metric, log scale, green where native is better.

function svgChart(rowsByScenario, meta) {
  const bars = []
  for (const [n, rows] of rowsByScenario) {
    for (const row of rows) {
      if (!row.better || row.ratio === null || !Number.isFinite(row.ratio) || row.ratio <= 0) continue
      if (row.label.includes('in the idle window') || row.label.includes(', max')) continue
      bars.push({ label: `S${n} ${row.label}`, ratio: row.ratio, better: row.better })
    }
  }
  const W = 900
  const rowH = 26
  const left = 330
  const right = 70
  const top = 64
  const plotW = W - left - right
  const minL = -2 // 0.01×
  const maxL = 2 // 100×
  const H = top + bars.length * rowH + 60
  const x = (r) => left + ((Math.min(maxL, Math.max(minL, Math.log10(r))) - minL) / (maxL - minL)) * plotW
  const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
  const out = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`)
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`)
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">feishu-transport vs @larksuiteoapi/node-sdk WSClient: native / official (log scale)</text>`)
  out.push(`<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">green: native better (↑ higher is better, ↓ lower is better); medians of ${esc(meta.rounds)} round(s), ${esc(meta.date)}, ${esc(meta.nproc)} cores</text>`)
  for (let l = minL; l <= maxL; l++) {
    const gx = x(10 ** l)
    out.push(`<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${top + bars.length * rowH}" stroke="${l === 0 ? '#333' : '#ddd'}" stroke-width="${l === 0 ? 1.5 : 1}"/>`)
    out.push(`<text x="${gx}" y="${top + bars.length * rowH + 16}" text-anchor="middle" fill="#555">${10 ** l}×</text>`)
  }
  bars.forEach((b, i) => {
    const y = top + i * rowH
    const good = b.better === 'higher' ? b.ratio > 1 : b.ratio < 1
    const x0 = x(1)
    const x1 = x(b.ratio)
    const capped = Math.log10(b.ratio) > maxL || Math.log10(b.ratio) < minL
    out.push(`<text x="${left - 8}" y="${y + 17}" text-anchor="end">${esc(b.label)} ${b.better === 'higher' ? '↑' : '↓'}</text>`)
    out.push(`<rect x="${Math.min(x0, x1)}" y="${y + 5}" width="${Math.max(1, Math.abs(x1 - x0))}" height="${rowH - 10}" fill="${good ? '#2e9d5b' : '#d0453a'}"/>`)
    const tx = x1 >= x0 ? x1 + 4 : x1 - 4
    out.push(`<text x="${tx}" y="${y + 17}" text-anchor="${x1 >= x0 ? 'start' : 'end'}" fill="#222">${esc(fmtRatio(b.ratio))}${capped ? ' (capped)' : ''}</text>`)
  })
  out.push(`<text x="${W / 2}" y="${H - 14}" text-anchor="middle" fill="#555">native / official; from bench/RESULTS.md (${esc(meta.command)})</text>`)
  out.push('</svg>')
  return out.join('\n') + '\n'
}

// ---------------------------------------------------------------------------------------
// Main

const started = Date.now()
const meta = { ...machine(), date: new Date().toISOString(), command: `node bench/run.mjs${process.argv.slice(2).length ? ' ' + process.argv.slice(2).join(' ') : ''}`, rounds: cfg.rounds }
if (process.env.npm_lifecycle_event === 'bench') meta.command = `npm run bench${process.argv.slice(2).length ? ' -- ' + process.argv.slice(2).join(' ') : ''}`
console.log(`bench: ${quick ? 'quick' : 'full'} run, ${cfg.rounds} round(s); ${meta.nproc} cores, ${meta.cpu}, load ${meta.loadStart}`)

// The raw Rust client of scenarios 7 and 8 (examples/raw_client.rs), built unless --quick.
let rawBuilt = existsSync(RAW_CLIENT)
if (!quick && (runs(7) || runs(8))) {
  console.log('bench: cargo build --release --example raw_client')
  execFileSync('cargo', ['build', '--release', '--example', 'raw_client'], { cwd: path.join(here, '..'), stdio: 'inherit' })
  rawBuilt = true
}
if (!rawBuilt) console.log(`bench: ${RAW_CLIENT} is not built: scenarios 7 and 8 run without the raw client`)

const all = new Map()
let storeSection = null
const roundLines = []
let failed = null
try {
  for (const sc of scenarios) {
    if (!runs(sc.n)) continue
    const s = cfg[`s${sc.n}`]
    const kinds = (sc.kinds || KINDS).filter((k) => k !== 'raw' || rawBuilt)
    const rounds = Object.fromEntries(kinds.map((k) => [k, []]))
    for (let round = 1; round <= cfg.rounds; round++) {
      for (const kind of kinds) {
        const t0 = Date.now()
        const r = await sc.run(kind, s)
        rounds[kind].push(r)
        const brief = Object.entries(r)
          .filter(([, v]) => typeof v === 'number')
          .map(([k, v]) => `${k}=${fmt(v, Math.abs(v) < 10 ? 2 : 0)}`)
          .join(' ')
        const lat = r.latency ? ` p50=${fmt(r.latency.p50Us / 1000, 2)}ms p99=${fmt(r.latency.p99Us / 1000, 2)}ms max=${fmt(r.latency.maxUs / 1000, 2)}ms` : ''
        const rec = r.recoveryAll ? ` drops=[${r.recoveryAll.join(', ')}]ms` : ''
        const line = `  S${sc.n} round ${round} ${kind.padEnd(8)} ${brief}${lat}${rec} (${((Date.now() - t0) / 1000).toFixed(1)} s)`
        roundLines.push(line.trim())
        console.log(line)
      }
    }
    all.set(sc.n, { sc, s, rounds })
  }
  if (runStores) {
    console.log('bench: dedupe.store section (native client; memory, sqlite, redis)')
    storeSection = await runStoreSection(cfg.stores, cfg.rounds)
  }
} catch (e) {
  failed = e
} finally {
  await server.call('exit', {}, 10_000).catch(() => server.child.kill('SIGKILL'))
}

const tables = {}
for (const [n, { rounds }] of all) tables[n] = scenarioTable(n, rounds)
meta.loadEnd = os.loadavg().map((x) => x.toFixed(2)).join(' ')
meta.seconds = ((Date.now() - started) / 1000).toFixed(0)

function markdownTable(n) {
  if (tables[n].some((r) => r.raw !== undefined)) {
    const lines = ['| metric | official WSClient | FeishuTransport | raw Rust client | Node floor | native / official | native / raw | native / Node floor |', '|---|---:|---:|---:|---:|---:|---:|---:|']
    for (const r of tables[n]) {
      lines.push(`| ${r.label} | ${fmt(r.official, r.digits)} | ${fmt(r.native, r.digits)} | ${fmt(r.raw, r.digits)} | ${fmt(r.floor, r.digits)} | ${fmtRatio(r.ratio)} | ${fmtRatio(r.rawRatio)} | ${fmtRatio(r.floorRatio)} |`)
    }
    return lines.join('\n')
  }
  const lines = ['| metric | official WSClient | FeishuTransport | native / official |', '|---|---:|---:|---:|']
  for (const r of tables[n]) {
    lines.push(`| ${r.label} | ${fmt(r.official, r.digits)} | ${fmt(r.native, r.digits)} | ${fmtRatio(r.ratio)}${r.better ? (r.better === 'higher' ? ' ↑' : ' ↓') : ''} |`)
  }
  return lines.join('\n')
}

const targetRows = targets(tables)
if (storeSection) targetRows.push(storeTarget(storeRows(storeSection)))
const status = (ok) => (ok === null ? 'not run' : ok ? 'PASS' : 'MISS')
console.log('')
for (const [n, { sc }] of all) {
  console.log(`Scenario ${n}: ${sc.name}`)
  for (const r of tables[n]) {
    const raw = r.raw !== undefined ? `   raw ${fmt(r.raw, r.digits).padStart(10)}   native/raw ${fmtRatio(r.rawRatio)}` : ''
    const floor = r.floor !== undefined && r.floor !== null ? `   floor ${fmt(r.floor, r.digits).padStart(8)}   native/floor ${fmtRatio(r.floorRatio)}` : ''
    console.log(`  ${r.label.padEnd(36)} official ${fmt(r.official, r.digits).padStart(10)}   native ${fmt(r.native, r.digits).padStart(10)}   native/official ${fmtRatio(r.ratio)}${raw}${floor}`)
  }
}
if (storeSection) {
  console.log('dedupe.store section (native client; medians)')
  for (const r of storeRows(storeSection)) {
    if (r.skipped) { console.log(`  ${r.store.padEnd(7)} skipped: ${r.skipped}`); continue }
    const trips = r.burstTrips === null ? '' : `   Redis round trips/event ${fmt(r.burstTrips, 2)} (burst), ${fmt(r.steadyTrips, 2)} (1 000/s)`
    console.log(`  ${r.store.padEnd(7)} burst ${fmt(r.eventsPerSec).padStart(8)} events/s (${fmtRatio(r.ofMemory)} memory), ${fmt(r.burstCpu, 1)} CPU ms/1k, p50/p99 ${fmt(r.burstP50, 2)}/${fmt(r.burstP99, 2)} ms; 1 000/s ${fmt(r.steadyCpu, 1)} CPU ms/1k, p50/p99 ${fmt(r.steadyP50, 2)}/${fmt(r.steadyP99, 2)} ms${trips}`)
  }
  console.log(`  (${storeSection.seconds.toFixed(0)} s; load ${storeSection.loadStart} → ${storeSection.loadEnd})`)
}
console.log('\nTargets:')
for (const t of targetRows) console.log(`  ${status(t.ok).padEnd(7)} ${t.name}: ${t.shown}`)
if (problems.length) console.log(`\nDelivery problems:\n  ${problems.join('\n  ')}`)
console.log(`\nbench: ${failed ? 'FAILED' : 'completed'} in ${meta.seconds} s`)

if (write && !failed) {
  const md = []
  md.push('# Benchmark results')
  md.push('')
  md.push('`FeishuTransport` (this package) against the official `@larksuiteoapi/node-sdk` `WSClient` with an `EventDispatcher`, both with a no-op handler, against the same emulator in the same run. Written by `bench/run.mjs`; see `bench/NOTES.md` for what was changed and measured along the way.')
  md.push('')
  md.push(`- **Command:** \`${meta.command}\``)
  md.push(`- **Date:** ${meta.date}`)
  md.push(`- **Machine:** ${meta.nproc} cores (${meta.cpu}), ${meta.memory} RAM, ${meta.kernel}; shared with other work (load average ${meta.loadStart} at the start, ${meta.loadEnd} at the end)`)
  md.push(`- **Software:** Node ${meta.node}, ${meta.rust}, @larksuiteoapi/node-sdk ${meta.sdk}, feishu-transport ${meta.addon} (commit ${meta.commit}, release build)`)
  md.push(`- **Method:** the emulator runs in its own process and pushes from Rust; each client runs in a fresh process per round and measures its own CPU (\`process.cpuUsage()\`, every thread) and peak RSS (\`VmHWM\`). Rounds alternate official, native, official, native, …; ${meta.rounds} rounds per scenario; every figure is the median over rounds. Throughput is counted from the first push to the last 200 ack. Total run time ${meta.seconds} s.`)
  md.push('')
  md.push('## Targets')
  md.push('')
  md.push('| target | result | figures |')
  md.push('|---|---|---|')
  for (const t of targetRows) md.push(`| ${t.name} | **${status(t.ok)}** | ${t.shown} |`)
  md.push('')
  md.push('![native / official ratios](ratios.svg)')
  for (const [n, { sc, s }] of all) {
    md.push('')
    md.push(`## Scenario ${n}: ${sc.name}`)
    md.push('')
    md.push(sc.describe(s) + '.')
    md.push('')
    md.push(markdownTable(n))
  }
  md.push('')
  md.push('↑ higher is better, ↓ lower is better.')
  md.push('')
  if (storeSection) {
    md.push(storeMarkdown(storeSection, cfg.stores, meta.command))
    md.push('')
  }
  md.push('## Every round')
  md.push('')
  md.push('As the run printed them (CPU in ms, RSS in MB, latency in ms).')
  md.push('')
  md.push('```')
  md.push(...roundLines)
  md.push('```')
  md.push('')
  const previous = readFileSync(path.join(here, 'RESULTS.md'), 'utf8')
  const kept = previous.includes(KEPT) ? `\n\n${previous.slice(previous.indexOf(KEPT))}` : ''
  writeFileSync(path.join(here, 'RESULTS.md'), md.join('\n') + kept)
  writeFileSync(path.join(here, 'ratios.svg'), svgChart([...Object.entries(tables)].map(([n, rows]) => [n, rows]), meta))
  console.log('wrote bench/RESULTS.md and bench/ratios.svg')
}

if (writeStoresOnly && !failed && storeSection) {
  // Only the stores section is replaced (or placed before the kept sections, or at the end).
  const file = path.join(here, 'RESULTS.md')
  const previous = readFileSync(file, 'utf8')
  const section = storeMarkdown(storeSection, cfg.stores, meta.command)
  const begin = previous.indexOf(STORES_BEGIN)
  // The end marker after the begin marker: an earlier section without its begin marker
  // (one was hand-edited off) made every run add a section instead of replacing one.
  const end = begin >= 0 ? previous.indexOf(STORES_END, begin) : -1
  let next
  if (begin >= 0 && end > begin) next = previous.slice(0, begin) + section + previous.slice(end + STORES_END.length)
  else if (previous.includes(KEPT)) next = previous.replace(KEPT, `${section}\n\n${KEPT}`)
  else next = `${previous.trimEnd()}\n\n${section}\n`
  writeFileSync(file, next)
  console.log('wrote the stores section of bench/RESULTS.md')
}

if (failed) {
  console.error(failed.stack || String(failed))
  process.exit(1)
}
if (problems.length) process.exit(2)
