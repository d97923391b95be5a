// Runs one load against one client, for profiling (not part of `npm run bench`):
//
//   node bench/profile.mjs --client native --count 100000 [--bytes 512] [--fragments 1]
//        [--in-flight 256] [--store sqlite:/tmp/x.db|redis://…] [--node-args="--cpu-prof --cpu-prof-dir=/tmp/prof"]
//        [--wrap="perf record -e cpu-clock -g -o /tmp/perf.data --"]
//
// The emulator runs in its own process (bench/emulator-server.mjs), the client in another
// (bench/client.mjs), started with `--node-args` and/or under the `--wrap` command.
import { fork, spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const here = path.dirname(fileURLToPath(import.meta.url))
const { values: a } = parseArgs({
  options: {
    client: { type: 'string', default: 'native' },
    count: { type: 'string', default: '100000' },
    warmup: { type: 'string', default: '2000' },
    bytes: { type: 'string', default: '512' },
    fragments: { type: 'string', default: '1' },
    'in-flight': { type: 'string', default: '256' },
    rate: { type: 'string' },
    transports: { type: 'string', default: '1' },
    // The native client's dedupe.store, as bench/run.mjs --store passes it.
    store: { type: 'string', default: 'memory' },
    'node-args': { type: 'string', default: '' },
    wrap: { type: 'string', default: '' },
  },
})

function channel(child) {
  let next = 1
  const waiting = new Map()
  let onReady
  const ready = new Promise((r) => { onReady = r })
  child.on('message', (m) => {
    if (m.ready) return onReady(m)
    const w = waiting.get(m.id)
    if (!w) return
    waiting.delete(m.id)
    m.ok ? w.resolve(m.result) : w.reject(new Error(m.error))
  })
  return {
    ready,
    call: (cmd, p = {}) => new Promise((resolve, reject) => {
      const id = next++
      waiting.set(id, { resolve, reject })
      child.send({ id, cmd, ...p })
    }),
  }
}

const n = Number(a.transports)
const apps = Array.from({ length: n }, (_, i) => ({ appId: `cli_b0e1c2d3e4f5a6${(0x10 + i).toString(16)}`, appSecret: `bench-secret-${i}` }))
// The emulator keeps two tokio workers (the addon's default is one, src/lib.rs): its
// pusher, writer and ack reader run in parallel, so it stays off the critical path.
const EMULATOR_ENV = { ...process.env, TOKIO_WORKER_THREADS: process.env.EMULATOR_WORKER_THREADS || '2' }
const server = channel(fork(path.join(here, 'emulator-server.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: EMULATOR_ENV }))
await server.ready
const { domain } = await server.call('start', { options: { apps, ackDeadlineMs: 60_000 } })
const clientArgs = [path.join(here, 'client.mjs'), '--client', a.client, '--domain', domain, '--apps', apps.map((x) => `${x.appId}:${x.appSecret}`).join(','), '--transports', String(n), '--store', a.store]
const nodeArgs = a['node-args'] ? a['node-args'].split(' ') : []
const wrap = a.wrap ? a.wrap.split(' ') : []
const argv = [...wrap, process.execPath, ...nodeArgs, ...clientArgs]
const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
const client = channel(child)
await client.ready
await server.call('waitConnections', { n })
const appIds = apps.map((x) => x.appId)
const common = { payloadBytes: Number(a.bytes), fragments: Number(a.fragments), maxInFlight: Number(a['in-flight']), apps: appIds }
await server.call('warmMany', { count: Number(a.warmup), ...common })
await client.call('begin')
const r = await server.call('push', { count: Number(a.count), ...common, ratePerSec: a.rate ? Number(a.rate) : undefined, latency: a.rate ? { skip: Number(a.warmup) + 100 } : undefined })
const c = await client.call('end')
console.log(JSON.stringify({ eventsPerSec: Math.round(r.eventsPerSec), cpuMsPer1k: +((c.cpuMs / Number(a.count)) * 1000).toFixed(2), peakRssMB: +(c.peakRssBytes / 2 ** 20).toFixed(1), emulatorCpuMsPer1k: +((r.emulatorCpuMs / Number(a.count)) * 1000).toFixed(2), handled: c.handled, pending: r.pending, latency: r.latency, threadCpuMs: c.threadCpuMs }))
await client.call('exit')
await new Promise((resolve) => child.on('exit', resolve))
await server.call('exit')
