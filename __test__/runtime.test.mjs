// The addon's tokio runtime (src/lib.rs): one worker thread unless TOKIO_WORKER_THREADS
// says otherwise. A second worker only adds wake-ups per event (bench/NOTES.md, "Steady
// rates"). And an idle session leaves that worker asleep. Linux only: it counts threads
// and their wakes through /proc.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { FeishuEmulator } from '../index.js'
import { waitFor } from './helpers.mjs'

const script = fileURLToPath(new URL('./children/runtime-workers.cjs', import.meta.url))
const idleScript = fileURLToPath(new URL('./children/idle-transport.cjs', import.meta.url))

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

// The tokio worker threads of process `pid` (their comm, as in children/runtime-workers.cjs)
// and how many times each has been put on a CPU: the third field of
// /proc/PID/task/TID/schedstat.
function workerRuns(pid) {
  let runs = 0
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()
    if (comm === 'tokio-rt-worker' || comm === 'tokio-runtime-w') {
      runs += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[2])
    }
  }
  return runs
}

test('a connected transport with nothing to do does not wake its tokio worker', { skip: process.platform !== 'linux' }, async () => {
  // The emulator lives in this process, so the child's worker serves only the transport.
  const emulator = await FeishuEmulator.start()
  const child = spawn(process.execPath, [idleScript, emulator.domain, emulator.appId, emulator.appSecret], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    await new Promise((resolve, reject) => {
      child.stdout.on('data', (d) => { if (String(d).includes('ready')) resolve() })
      child.on('exit', (code) => reject(new Error(`child exited ${code}`)))
    })
    // The session's first ping goes out at once. Watch after it; its pong may still wake
    // the worker once inside the window, hence the allowance of one below.
    await waitFor(() => emulator.connections()[0]?.pings >= 1, { what: 'the ping on the connection' })
    const before = workerRuns(child.pid)
    // The observed quantity is the wakes within a span of idle time, so this one waits
    // for time itself. The ping interval is 120 s, so nothing is due in it. A tick that
    // ran regardless (the fragment expiry's, once) cost two or three wakes a second.
    await new Promise((resolve) => setTimeout(resolve, 2500))
    const woke = workerRuns(child.pid) - before
    assert.ok(woke <= 1, `the idle worker was put on a CPU ${woke} times in 2.5 s`)
  } finally {
    child.kill('SIGKILL')
    await emulator.close()
  }
})
