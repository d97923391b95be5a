// The platform smoke, run by a foreign Node (arm64 under qemu-user, Windows under wine)
// from a directory that holds the package's runtime files and one built addon, named the
// way the package's loader looks for it:
//
//   node platform-smoke.cjs <package dir> <result file>
//
// In that one process: the addon loads through the package's own loader, the emulator
// (the same addon) serves on a loopback port, and a transport connects, receives a plain
// event and a 3-fragment one (each acked with code 200), reconnects after the emulator
// drops the socket and receives again. The result goes to a file (wine gives Node no
// usable stdout pipe). The process is then left to exit by itself: the parent fails the
// run if it does not, which is what "exits after close()" means.
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const assert = require('node:assert/strict')

const [pkgDir, resultFile] = process.argv.slice(2)
const steps = []
const step = (name) => steps.push({ name, ms: Math.round(performance.now()) })

async function main() {
  const { FeishuTransport, FeishuEmulator } = require(path.resolve(pkgDir, 'index.js'))
  const loaded = Object.keys(require.cache).filter((f) => f.endsWith('.node')).map((f) => path.basename(f))
  step('loaded')
  const emulator = await FeishuEmulator.start()
  const events = []
  let ready
  const readyP = new Promise((r) => { ready = r })
  let reconnected
  const reconnectedP = new Promise((r) => { reconnected = r })
  const transport = new FeishuTransport({
    appId: emulator.appId,
    appSecret: emulator.appSecret,
    domain: emulator.domain,
    logLevel: 'silent',
    proxy: null,
    // Emulated CPUs are slow: generous timeouts, quick reconnects.
    reconnect: { initialDelayMs: 20, maxDelayMs: 200, jitter: 0 },
    timeouts: { discoveryMs: 30_000, handshakeMs: 30_000, pongMs: 30_000, closeMs: 5_000 },
    onReady: () => ready(),
    onReconnected: () => reconnected(),
    onEvent: (e) => { events.push(e) },
  })
  const running = transport.start()
  await readyP
  step('connected')
  const ev = (id, extra = {}) => ({ schema: '2.0', header: { event_id: id, event_type: 'im.message.receive_v1' }, event: { id, ...extra } })
  const acked = async (id) => assert.equal((await emulator.waitForAck(id, { timeoutMs: 60_000 })).code, 200)

  await acked(emulator.pushEvent(ev('plain')))
  step('plain event acked')
  // Large enough that each of the 3 fragments carries real payload.
  const big = 'x'.repeat(30_000)
  await acked(emulator.pushEvent(ev('fragmented', { big }), { fragments: 3 }))
  step('3-fragment event acked')
  const seen = (id) => events.find((e) => e.eventId === id)
  assert.equal(seen('plain')?.payload.event.id, 'plain', 'the plain event reached onEvent')
  assert.equal(seen('fragmented')?.payload.event.big, big, 'the fragmented event arrived whole')

  const first = transport.status().connectionId
  assert.equal(emulator.dropConnections(null, false), 1)
  await reconnectedP
  assert.notEqual(transport.status().connectionId, first)
  step('reconnected after a drop')
  await acked(emulator.pushEvent(ev('after-drop')))
  step('event after reconnect acked')

  await transport.close()
  assert.deepEqual(await running, { reason: 'closed' })
  await emulator.close()
  step('closed')
  return { arch: process.arch, platform: process.platform, node: process.version, loaded, events: events.length, steps }
}

main().then(
  (r) => fs.writeFileSync(resultFile, JSON.stringify({ ok: true, ...r })),
  (err) => {
    fs.writeFileSync(resultFile, JSON.stringify({ ok: false, error: String(err?.stack ?? err), steps }))
    process.exitCode = 1
  },
)
