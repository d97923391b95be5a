// A real redis-server for the tests that need one (the durable dedupe store, the
// multi-process soak): on a free loopback port, no persistence, stopped after the file.
import { after } from 'node:test'
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { waitFor } from '../helpers.mjs'

/**
 * A real redis-server on a free loopback port; `stop()` kills it, `start()` again on the
 * same port.
 *
 * `tls: { certPem, keyPem, caPem }` serves TLS only (`rediss://`, no plain port), with
 * that certificate; clients are not asked for one. `password` sets `requirepass`.
 */
export async function redisServer({ tls: serverTls = null, password = null } = {}) {
  const which = spawnSync('redis-server', ['--version'])
  if (which.error) {
    throw new Error('redis-server is not installed: these tests need a real one (Debian/Ubuntu: apt-get install -y redis-server; .ci/run installs it)')
  }
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)) })
  })
  const args = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']
  let dir = null
  if (serverTls) {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'feishu-redis-tls-'))
    const file = (name, text) => { const f = path.join(dir, name); fs.writeFileSync(f, text, { mode: 0o600 }); return f }
    args.push('--port', '0', '--tls-port', String(port),
      '--tls-cert-file', file('server.crt', serverTls.certPem),
      '--tls-key-file', file('server.key', serverTls.keyPem),
      '--tls-ca-cert-file', file('ca.crt', serverTls.caPem),
      '--tls-auth-clients', 'no')
  } else {
    args.push('--port', String(port))
  }
  if (password) args.push('--requirepass', password)
  let proc = null
  // Any reply proves it is up (with a password, PING answers -NOAUTH).
  const ping = () => new Promise((resolve) => {
    const sock = serverTls
      ? tls.connect({ port, host: '127.0.0.1', ca: serverTls.caPem }, () => sock.write('PING\r\n'))
      : net.connect(port, '127.0.0.1', () => sock.write('PING\r\n'))
    sock.on('data', (d) => { sock.destroy(); resolve(/^[+-]/.test(String(d))) })
    sock.on('error', () => resolve(false))
  })
  const auth = password ? `:${encodeURIComponent(password)}@` : ''
  const r = {
    port,
    url: `${serverTls ? 'rediss' : 'redis'}://${auth}127.0.0.1:${port}`,
    async start() {
      let exited = null
      proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'ignore'] })
      let out = ''
      proc.stdout.on('data', (d) => { out += d })
      proc.on('exit', (code) => { exited = code })
      await waitFor(async () => {
        if (exited !== null) throw new Error(`redis-server ${args.join(' ')} exited with ${exited}:\n${out}`)
        return ping()
      }, { what: `redis-server PING on ${port}` })
    },
    async stop() {
      if (!proc) return
      const p = proc
      proc = null
      if (p.exitCode !== null) return
      const gone = new Promise((resolve) => p.on('exit', resolve))
      p.kill('SIGKILL')
      await gone
    },
  }
  await r.start()
  after(async () => {
    await r.stop()
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })
  return r
}
