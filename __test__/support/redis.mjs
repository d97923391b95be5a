// A real redis-server for the tests that need one (the durable dedupe store, the
// multi-process soak): on a free loopback port, no persistence, stopped after the file.
import { after } from 'node:test'
import { spawn, spawnSync } from 'node:child_process'
import net from 'node:net'
import { waitFor } from '../helpers.mjs'

/** A real redis-server on a free loopback port; `stop()` kills it, `start()` again on the same port. */
export async function redisServer() {
  const which = spawnSync('redis-server', ['--version'])
  if (which.error) {
    throw new Error('redis-server is not installed: these tests need a real one (Debian/Ubuntu: apt-get install -y redis-server; .ci/run installs it)')
  }
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)) })
  })
  let proc = null
  const ping = () => new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write('PING\r\n'))
    sock.on('data', (d) => { sock.destroy(); resolve(String(d).startsWith('+PONG')) })
    sock.on('error', () => resolve(false))
  })
  const r = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async start() {
      proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
      await waitFor(ping, { what: `redis-server PING on ${port}` })
    },
    async stop() {
      if (!proc) return
      const p = proc
      proc = null
      const gone = new Promise((resolve) => p.on('exit', resolve))
      p.kill('SIGKILL')
      await gone
    },
  }
  await r.start()
  after(() => r.stop())
  return r
}
