// Nothing of the transport keeps Node alive once it is not running.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

function run(script, timeoutMs = 10_000) {
  return new Promise((resolve) => {
    const started = Date.now()
    const child = spawn(process.execPath, [fileURLToPath(new URL(`./children/${script}`, import.meta.url))], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    child.stderr.on('data', (d) => { out += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, out, ms: Date.now() - started, ended: Date.now() })
    })
  })
}

test('a process that constructs a transport and never starts it exits at once', async () => {
  const r = await run('never-started.cjs')
  assert.equal(r.signal, null, r.out)
  assert.equal(r.code, 0, r.out)
  assert.match(r.out, /constructed/)
})

test('a process that starts and then closes exits within 1 s of the close', async () => {
  const r = await run('start-then-close.cjs')
  assert.equal(r.signal, null, r.out)
  assert.equal(r.code, 0, r.out)
  assert.match(r.out, /settled {"reason":"closed"}/)
  const closedAt = Number(/closed at (\d+)/.exec(r.out)[1])
  assert.ok(r.ended - closedAt < 1000, `exited ${r.ended - closedAt} ms after close`)
})

test('process.exit() while handlers run exits cleanly', async () => {
  const r = await run('exit-mid-handler.cjs')
  assert.equal(r.signal, null, r.out)
  assert.equal(r.code, 7, r.out)
})
