// The benchmark's client process: N clients of one kind, connected to the emulator of
// bench/emulator-server.mjs, each with a no-op handler that only counts.
//
//   node bench/client.mjs --client official|native|raw --domain http://127.0.0.1:PORT \
//     --apps cli_…:secret,cli_…:secret [--transports N] [--initial-delay-ms 100]
//
// `--transports N` starts N clients in this process, client i on app i mod apps.length.
// It reports `{ready}` over IPC once every client is connected (onReady), then answers:
//   begin → {}                 (a CPU and wall-clock mark)
//   end   → {cpuMs, wallMs, handled, rssBytes, peakRssBytes}   since the last begin
//   exit  → closes every client (force) and exits
// CPU is this process's own (process.cpuUsage(): every thread, the addon's included);
// the peak RSS is the kernel's VmHWM of this process.
// `--client raw` runs examples/raw_client.rs (the floor: a Rust client with no JavaScript,
// one app, one transport) as a child process and relays the commands to it over its
// stdin/stdout; the figures are the child's own (every thread's on-CPU time), so this
// process's Node runtime is not counted.
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'

const require = createRequire(import.meta.url)

const { values: args } = parseArgs({
  options: {
    client: { type: 'string' },
    domain: { type: 'string' },
    apps: { type: 'string' },
    transports: { type: 'string', default: '1' },
    'initial-delay-ms': { type: 'string', default: '100' },
    // The native client's dedupe.store (bench/run.mjs --store).
    store: { type: 'string', default: 'memory' },
  },
})

const kind = args.client
const n = Number(args.transports)
const apps = args.apps.split(',').map((s) => {
  const [appId, appSecret] = s.split(':')
  return { appId, appSecret }
})

let handled = 0
const clients = []

function vm(field) {
  const m = readFileSync('/proc/self/status', 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'))
  return m ? Number(m[1]) * 1024 : null
}

async function startOfficial() {
  const Lark = require('@larksuiteoapi/node-sdk')
  const ready = []
  for (let i = 0; i < n; i++) {
    const app = apps[i % apps.length]
    let onReady
    ready.push(new Promise((resolve) => { onReady = resolve }))
    const client = new Lark.WSClient({
      appId: app.appId,
      appSecret: app.appSecret,
      domain: args.domain,
      loggerLevel: Lark.LoggerLevel.error,
      onReady,
    })
    const dispatcher = new Lark.EventDispatcher({ loggerLevel: Lark.LoggerLevel.error }).register({
      'im.message.receive_v1': async () => { handled++ },
    })
    client.start({ eventDispatcher: dispatcher })
    clients.push({ close: async () => client.close({ force: true }) })
  }
  await Promise.all(ready)
}

async function startNative() {
  // BENCH_NATIVE_MODULE: a snapshot of index.js + native.js + the .node elsewhere, to
  // compare two builds of the hot path in one session (bench/NOTES.md).
  const { FeishuTransport } = require(process.env.BENCH_NATIVE_MODULE || '../index.js')
  const ready = []
  for (let i = 0; i < n; i++) {
    const app = apps[i % apps.length]
    let onReady
    ready.push(new Promise((resolve) => { onReady = resolve }))
    const t = new FeishuTransport({
      appId: app.appId,
      appSecret: app.appSecret,
      domain: args.domain,
      logLevel: 'error',
      reconnect: { initialDelayMs: Number(args['initial-delay-ms']) },
      dedupe: { store: args.store },
      onEvent: async () => { handled++ },
      onReady,
    })
    const running = t.start()
    running.catch((e) => { console.error(`native transport failed: ${e && e.message}`); process.exit(3) })
    clients.push({ close: async () => { await t.close({ force: true }); await running } })
  }
  await Promise.all(ready)
}

/** The raw Rust client's binary; bench/run.mjs builds it before the run. */
const RAW_CLIENT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'target', 'release', 'examples', 'raw_client')

let raw = null
async function startRaw() {
  if (!existsSync(RAW_CLIENT)) throw new Error(`${RAW_CLIENT} is missing: cargo build --release --example raw_client`)
  const app = apps[0]
  const child = spawn(RAW_CLIENT, ['--domain', args.domain, '--app', `${app.appId}:${app.appSecret}`], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout })
  const waiting = []
  lines.on('line', (l) => { const w = waiting.shift(); if (w) w(JSON.parse(l)) })
  child.on('exit', (code) => { if (!raw || !raw.exiting) { console.error(`raw client exited (code ${code})`); process.exit(3) } })
  child.stdin.on('error', (e) => { if (!raw.exiting) { console.error(`raw client: ${e.message}`); process.exit(3) } })
  const ask = (cmd) => new Promise((resolve) => { waiting.push(resolve); if (cmd) child.stdin.write(`${cmd}\n`) })
  raw = { child, ask, exiting: false }
  await ask(null) // {ready}
  clients.push({ close: async () => { raw.exiting = true; child.stdin.end('exit\n'); await new Promise((r) => child.once('exit', r)) } })
}

// On-CPU ms and runs (times the thread was put on a CPU: its wakes) of each thread of this
// process by name, from /proc/self/task/TID/schedstat: "on-CPU ns, waiting ns, runs".
function threadCpuMs() {
  const out = {}
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const [ns, , runs] = readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ').map(Number)
      const name = Number(tid) === process.pid ? 'main (JS)' : readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim()
      out[name] = (out[name] || 0) + ns / 1e6
      out[`${name} runs`] = (out[`${name} runs`] || 0) + runs
    } catch {}
  }
  return out
}
const diffThreads = (a, b) => Object.fromEntries(Object.entries(b).map(([k, v]) => [k, +(v - (a[k] || 0)).toFixed(1)]))

let threadMark = {}
let cpuMark = process.cpuUsage()
let wallMark = performance.now()
let handledMark = 0

const rawCommands = {
  begin: () => raw.ask('begin'),
  async end() {
    const r = await raw.ask('end')
    return { ...r, handledTotal: r.handled }
  },
}

const commands = {
  begin() {
    if (raw) return rawCommands.begin()
    cpuMark = process.cpuUsage()
    threadMark = threadCpuMs()
    wallMark = performance.now()
    handledMark = handled
    return {}
  },
  end() {
    if (raw) return rawCommands.end()
    const d = process.cpuUsage(cpuMark)
    return {
      cpuMs: (d.user + d.system) / 1000,
      wallMs: performance.now() - wallMark,
      handled: handled - handledMark,
      handledTotal: handled,
      rssBytes: process.memoryUsage.rss(),
      peakRssBytes: vm('VmHWM'),
      threadCpuMs: diffThreads(threadMark, threadCpuMs()),
    }
  },
  async exit() {
    await Promise.all(clients.map((c) => c.close().catch(() => {})))
    setImmediate(() => process.exit(0))
    return {}
  },
}

process.on('message', async (msg) => {
  try {
    const result = await commands[msg.cmd]()
    process.send({ id: msg.id, ok: true, result })
  } catch (e) {
    process.send({ id: msg.id, ok: false, error: String(e && e.stack ? e.stack : e) })
  }
})
process.on('disconnect', () => process.exit(0))

const t0 = performance.now()
await ({ official: startOfficial, native: startNative, raw: startRaw })[kind]()
process.send({ ready: true, connectMs: performance.now() - t0 })
