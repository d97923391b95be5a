// The addon's tokio runtime (src/lib.rs): one worker thread unless TOKIO_WORKER_THREADS
// says otherwise. A second worker only adds wake-ups per event (bench/NOTES.md, "Steady
// rates"). Linux only: it counts threads through /proc.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const script = fileURLToPath(new URL('./children/runtime-workers.cjs', import.meta.url))

function workers(extraEnv) {
  const env = { ...process.env, ...extraEnv }
  if (extraEnv.TOKIO_WORKER_THREADS === undefined) delete env.TOKIO_WORKER_THREADS
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    child.on('exit', (code) => {
      clearTimeout(timer)
      if (code !== 0) return reject(new Error(`child exited ${code}: ${out}`))
      resolve(JSON.parse(out.trim().split('\n').pop()).workers)
    })
  })
}

test('a transport runs on one tokio worker thread', { skip: process.platform !== 'linux' }, async () => {
  assert.equal(await workers({}), 1)
})

test('TOKIO_WORKER_THREADS still sets the count', { skip: process.platform !== 'linux' }, async () => {
  assert.equal(await workers({ TOKIO_WORKER_THREADS: '3' }), 3)
})
