// Process lifecycle: repeated runs leak nothing; a worker running a transport can be
// terminated.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const child = (name, args = []) => spawnSync(process.execPath, ['--expose-gc', fileURLToPath(new URL(`./children/${name}`, import.meta.url)), ...args], { encoding: 'utf8', timeout: 120_000 })

test('500 start()/close() cycles leave no growth in fds or threads and bounded RSS', () => {
  const r = child('cycles.cjs', ['500'])
  assert.equal(r.status, 0, r.stdout + r.stderr)
  const { before, after } = JSON.parse(r.stdout.trim().split('\n').pop())
  console.log(`cycles: ${JSON.stringify({ before, after })}`)
  assert.ok(after.fds <= before.fds + 2, `fds ${before.fds} → ${after.fds}`)
  assert.ok(after.threads <= before.threads, `threads ${before.threads} → ${after.threads}`)
  assert.ok(after.rss - before.rss < 40, `rss ${before.rss.toFixed(1)} → ${after.rss.toFixed(1)} MB`)
})

test('a worker thread running a transport can be terminated and the process exits cleanly', () => {
  const r = child('worker-host.cjs')
  assert.equal(r.signal, null, r.stdout + r.stderr)
  assert.equal(r.status, 0, r.stdout + r.stderr)
  assert.match(r.stdout, /terminated 1/)
})
