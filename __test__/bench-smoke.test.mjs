// The benchmark in its CI form: `node bench/run.mjs --quick --no-write` (one round of
// every scenario, small counts, both clients; scenarios 7 and 8 add the raw Rust client
// when examples/raw_client.rs is built, and the Node floor (bench/node-floor.mjs); then the
// dedupe.store section, native only). Its figures are printed, never asserted:
// this only proves the run completes and both clients deliver every event (run.mjs exits
// non-zero otherwise).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const run = fileURLToPath(new URL('../bench/run.mjs', import.meta.url))

test('the quick benchmark completes and both clients deliver every event', { timeout: 180_000 }, async () => {
  const child = spawn(process.execPath, [run, '--quick', '--no-write'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d) => { out += d; process.stdout.write(d) })
  child.stderr.on('data', (d) => { out += d; process.stderr.write(d) })
  const code = await new Promise((resolve) => child.on('exit', resolve))
  assert.equal(code, 0, `bench/run.mjs --quick exited ${code}`)
  assert.match(out, /bench: completed/)
  assert.doesNotMatch(out, /Delivery problems/)
  for (const n of [1, 2, 3, 4, 5, 6, 7, 8]) assert.match(out, new RegExp(`Scenario ${n}:`))
  // The Node floor beside the steady scenarios' CPU rows (100/s and 1 000/s).
  assert.equal(out.match(/client CPU ms \/ 1 000 events .*floor +[\d,.]+ +native\/floor/g)?.length, 2, 'the Node floor column of scenarios 7 and 8')
  // The dedupe.store section: memory, SQLite and Redis (skipped, saying why, without redis-server).
  assert.match(out, /dedupe\.store section/)
  for (const store of ['memory', 'sqlite', 'redis']) assert.match(out, new RegExp(`^  ${store} +(burst|skipped)`, 'm'))
})
