// The floor of a Node client at a steady rate (scenarios 7 and 8, column "Node floor").
//
// A transport that hands each event to a JavaScript handler must wake the JavaScript
// thread for it, and at 100 or 1 000 events/s each event arrives alone, so each wakes it
// once. This measures what that wake costs when nothing else is done: a plain TCP socket
// (libuv's, no WebSocket, no protobuf, no TLS) receiving newline-delimited 512 B JSON
// events at a fixed rate, each `JSON.parse`d, handed to a no-op handler through a
// promise, and acked with a 26-byte write. No real client can do less per event and
// still run a JavaScript handler; a transport's "native / floor" ratio says how much its
// own machinery adds on top of Node's.
//
//   node bench/node-floor.mjs --count 3000 --warmup 300 --rate 1000 [--work floor|parse|wake]
//
// `--work` takes the floor apart (bench/NOTES.md, "The floor taken apart"): `floor` (the
// default, what the bench runs) parses, calls the handler and acks; `parse` parses and
// calls the handler but writes nothing; `wake` only finds each event's end in the bytes
// read, so it measures the wake and libuv's delivery of the data to JavaScript alone.
//
// The parent pushes; a forked child is the client. One JSON line comes out:
// { cpuMsPer1k, eventsPerSec, peakRssMB, handled, latency } (latency only with
// `--work floor`, the one that acks). CPU is the child's own (process.cpuUsage(): every
// thread), from the end of the warm-up to the last event, as bench/client.mjs measures
// the other clients.
import { fork } from 'node:child_process'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { percentile } from './stats.mjs'

const { values: a, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    count: { type: 'string', default: '3000' },
    warmup: { type: 'string', default: '300' },
    rate: { type: 'string', default: '1000' },
    work: { type: 'string', default: 'floor' },
  },
})
if (!['floor', 'parse', 'wake'].includes(a.work)) throw new Error(`--work must be floor, parse or wake, not ${a.work}`)
const count = Number(a.count)
const warmup = Number(a.warmup)
const rate = Number(a.rate)

function peakRssMB() {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))
  return m ? Number(m[1]) / 1024 : null
}

if (positionals[0] === 'client') {
  const socket = net.connect(Number(positionals[1]), '127.0.0.1')
  // As every client here (and the emulator) does: an ack leaves when it is written.
  socket.setNoDelay(true)
  const ack = Buffer.from('{"code":200,"headers":{}}\n')
  const handler = () => undefined
  const total = warmup + count
  let buffered = null
  let n = 0
  let cpu
  let t0
  socket.on('data', (chunk) => {
    let data = buffered ? Buffer.concat([buffered, chunk]) : chunk
    let nl
    while ((nl = data.indexOf(10)) >= 0) {
      if (a.work !== 'wake') {
        const event = JSON.parse(data.toString('utf8', 0, nl))
        if (a.work === 'floor') Promise.resolve(handler(event)).then(() => socket.write(ack))
        else Promise.resolve(handler(event))
      }
      data = data.subarray(nl + 1)
      if (++n === warmup) {
        cpu = process.cpuUsage()
        t0 = process.hrtime.bigint()
      } else if (n === total) {
        const d = process.cpuUsage(cpu)
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9
        setImmediate(() => {
          console.log(JSON.stringify({ cpuMsPer1k: ((d.user + d.system) / 1000 / count) * 1000, eventsPerSec: count / seconds, peakRssMB: peakRssMB(), handled: count }))
          socket.end()
        })
      }
    }
    buffered = data.length ? data : null
  })
} else {
  // 512 B of JSON, shaped like a Feishu event envelope.
  const base = { schema: '2.0', header: { event_id: '', event_type: 'im.message.receive_v1', create_time: '1700000000000', app_id: 'cli_floor' }, event: { text: '' } }
  const line = (i) => {
    base.header.event_id = `ev-${String(i).padStart(12, '0')}`
    const bare = JSON.stringify(base).length
    base.event.text = 'x'.repeat(Math.max(0, 512 - bare))
    return `${JSON.stringify(base)}\n`
  }
  const total = warmup + count
  // Ack latency as the emulator measures it for the other clients: from the event's write
  // to its ack's arrival, here in this pusher's JavaScript (so it also holds the pusher's
  // own wake for the ack), for the events after the warm-up.
  const sentAt = new Float64Array(total)
  const latencies = []
  const server = net.createServer((c) => {
    c.setNoDelay(true)
    let sent = 0
    let acked = 0
    c.on('data', (chunk) => {
      const now = performance.now()
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) {
        if (acked >= warmup && acked < total) latencies.push(now - sentAt[acked])
        acked++
      }
    })
    const start = process.hrtime.bigint()
    // One event per 1/rate s on a monotonic schedule, so each arrives alone as in the
    // emulator's steady scenarios.
    const tick = () => {
      const due = Math.min(total, Math.floor((Number(process.hrtime.bigint() - start) / 1e9) * rate) + 1)
      while (sent < due) {
        const text = line(sent)
        sentAt[sent++] = performance.now()
        c.write(text)
      }
      if (sent < total) setTimeout(tick, Math.max(0, ((sent / rate) * 1e3) - Number(process.hrtime.bigint() - start) / 1e6))
    }
    tick()
  })
  server.listen(0, '127.0.0.1', () => {
    const child = fork(fileURLToPath(import.meta.url), ['client', String(server.address().port), '--count', a.count, '--warmup', a.warmup, '--rate', a.rate, '--work', a.work], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.on('exit', (code) => {
      server.close()
      if (code !== 0) process.exit(code ?? 1)
      const result = JSON.parse(out.trim().split('\n').pop())
      if (latencies.length) {
        // In µs, by the rule the emulator's latencies follow (bench/stats.mjs).
        const us = latencies.map((ms) => Math.round(ms * 1000)).sort((x, y) => x - y)
        result.latency = { samples: us.length, p50Us: percentile(us, 50), p99Us: percentile(us, 99), maxUs: us[us.length - 1] }
      }
      console.log(JSON.stringify(result))
      process.exit(code ?? 1)
    })
  })
}
