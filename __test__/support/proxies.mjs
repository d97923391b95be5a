// Small loopback proxies for the Node tests: HTTP CONNECT (optionally over TLS) and SOCKS5,
// each with optional username/password, each counting what passed through it, and each
// able to misbehave on demand. node:net only; everything stays on 127.0.0.1.
import net from 'node:net'
import tls from 'node:tls'

/** Buffered reads over a socket, for the handshakes; `rest()` hands the socket back. */
function reader(socket) {
  let buf = Buffer.alloc(0)
  let ended = false
  let wake = null
  const poke = () => { if (wake) { const w = wake; wake = null; w() } }
  const onData = (d) => { buf = Buffer.concat([buf, d]); poke() }
  const onEnd = () => { ended = true; poke() }
  socket.on('data', onData)
  socket.on('end', onEnd)
  socket.on('close', onEnd)
  socket.on('error', onEnd)
  const waitMore = () => new Promise((resolve) => { wake = resolve })
  return {
    /** Exactly `n` bytes, or null if the peer left first. */
    async read(n) {
      while (buf.length < n) {
        if (ended) return null
        await waitMore()
      }
      const out = buf.subarray(0, n)
      buf = buf.subarray(n)
      return out
    },
    /** Bytes up to and including `delim` (at most `max`), or null. */
    async readUntil(delim, max = 16 * 1024) {
      for (;;) {
        const i = buf.indexOf(delim)
        if (i >= 0) {
          const out = buf.subarray(0, i + delim.length)
          buf = buf.subarray(i + delim.length)
          return out
        }
        if (ended || buf.length > max) return null
        await waitMore()
      }
    },
    /** Whatever is buffered; stops reading for us (the caller pipes the socket on). */
    rest() {
      socket.pause()
      socket.off('data', onData)
      const out = buf
      buf = Buffer.alloc(0)
      return out
    },
  }
}

const GARBAGE = 'garbage, not a proxy\r\n'

/**
 * Starts a proxy on 127.0.0.1, port 0.
 * - `kind`: 'http' (CONNECT), 'https' (CONNECT over TLS; needs `tls: { certPem, keyPem }`)
 *   or 'socks5'.
 * - `auth`: `{ user, pass }` required of clients.
 * - `behaviour`: 'tunnel' (default), 'refuse' (HTTP 403 / SOCKS5 reply 0x02), 'garbage'
 *   (answers with text that is no protocol), 'silent' (reads, never answers).
 * - `refuseFirst`: the first this-many connections are refused whatever `behaviour` says.
 *
 * Resolves `{ port, url, urlWith(user, pass), connections, requests, tunnels, close() }`:
 * `connections` counts accepted sockets, `requests` lists each request's target
 * (`host:port`), `tunnels` the targets of tunnels actually opened.
 */
export async function startProxy({ kind = 'http', auth = null, behaviour = 'tunnel', refuseFirst = 0, tls: tlsOptions } = {}) {
  const sockets = new Set()
  const state = { connections: 0, requests: [], tunnels: [] }
  const track = (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); s.on('error', () => {}) }

  const serveHttp = async (s, how) => {
    const r = reader(s)
    if (how === 'garbage') {
      if (await r.read(1)) s.write(GARBAGE)
      return
    }
    const head = await r.readUntil(Buffer.from('\r\n\r\n'))
    if (!head) return
    const lines = head.toString('latin1').split('\r\n')
    const [method, target] = lines[0].split(' ')
    state.requests.push(target)
    if (method !== 'CONNECT') return s.end('HTTP/1.1 405 Method Not Allowed\r\n\r\n')
    if (auth) {
      const want = `Basic ${Buffer.from(`${auth.user}:${auth.pass}`).toString('base64')}`
      const ok = lines.some((l) => {
        const i = l.indexOf(':')
        return i > 0 && l.slice(0, i).trim().toLowerCase() === 'proxy-authorization' && l.slice(i + 1).trim() === want
      })
      if (!ok) return s.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n')
    }
    if (how === 'refuse') return s.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n')
    if (how === 'silent') return
    const [host, port] = splitHostPort(target)
    const upstream = net.connect({ host, port })
    track(upstream)
    upstream.once('error', () => s.end('HTTP/1.1 502 Bad Gateway\r\n\r\n'))
    upstream.once('connect', () => {
      upstream.setNoDelay(true)
      state.tunnels.push(target)
      s.write('HTTP/1.1 200 Connection established\r\n\r\n')
      const early = r.rest()
      if (early.length) upstream.write(early)
      s.pipe(upstream)
      upstream.pipe(s)
      s.resume()
    })
  }

  const serveSocks = async (s, how) => {
    const r = reader(s)
    const greeting = await r.read(2)
    if (!greeting) return
    if (how === 'garbage') return s.write(GARBAGE)
    if (how === 'silent') return
    const methods = await r.read(greeting[1])
    if (greeting[0] !== 5 || !methods) return s.destroy()
    if (auth) {
      if (!methods.includes(2)) return s.end(Buffer.from([5, 0xff]))
      s.write(Buffer.from([5, 2]))
      const v = await r.read(2)
      const user = v && (await r.read(v[1]))
      const pl = user && (await r.read(1))
      const pass = pl && (await r.read(pl[0]))
      if (!pass) return
      const ok = user.toString() === auth.user && pass.toString() === auth.pass
      s.write(Buffer.from([1, ok ? 0 : 1]))
      if (!ok) return s.end()
    } else {
      s.write(Buffer.from([5, 0]))
    }
    const head = await r.read(4)
    if (!head) return
    let host
    if (head[3] === 1) host = [...(await r.read(4))].join('.')
    else if (head[3] === 4) host = `[${ipv6(await r.read(16))}]`
    else if (head[3] === 3) host = (await r.read((await r.read(1))[0])).toString()
    else return s.destroy()
    const port = (await r.read(2)).readUInt16BE(0)
    const target = `${host}:${port}`
    state.requests.push(target)
    const reply = (rep) => Buffer.from([5, rep, 0, 1, 127, 0, 0, 1, 0, 0])
    if (how === 'refuse') return s.end(reply(0x02))
    // The success reply must go out before any relayed byte: connect first, then answer.
    const upstream = net.connect({ host: host.replace(/^\[|\]$/g, ''), port })
    track(upstream)
    upstream.once('error', () => s.end(reply(0x05)))
    upstream.once('connect', () => {
      upstream.setNoDelay(true)
      state.tunnels.push(target)
      s.write(reply(0))
      const early = r.rest()
      if (early.length) upstream.write(early)
      s.pipe(upstream)
      upstream.pipe(s)
      s.resume()
    })
  }

  const onSocket = (s) => {
    track(s)
    s.setNoDelay(true)
    state.connections += 1
    const how = state.connections <= refuseFirst ? 'refuse' : behaviour
    ;(kind === 'socks5' ? serveSocks : serveHttp)(s, how).catch(() => s.destroy())
  }

  const server = kind === 'https'
    ? tls.createServer({ cert: tlsOptions.certPem, key: tlsOptions.keyPem }, onSocket)
    : net.createServer(onSocket)
  server.on('connection', (raw) => track(raw))
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = server.address().port
  const scheme = kind === 'socks5' ? 'socks5' : kind
  return {
    port,
    url: `${scheme}://127.0.0.1:${port}`,
    urlWith(user, pass) {
      return `${scheme}://${encodeURIComponent(user)}:${encodeURIComponent(pass)}@127.0.0.1:${port}`
    },
    get connections() { return state.connections },
    get requests() { return [...state.requests] },
    get tunnels() { return [...state.tunnels] },
    async close() {
      for (const s of sockets) s.destroy()
      await new Promise((resolve) => server.close(() => resolve()))
    },
  }
}

/** A loopback port with nothing listening on it. */
export async function closedPort() {
  const s = net.createServer()
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address()
  await new Promise((resolve) => s.close(resolve))
  return port
}

function splitHostPort(target) {
  const i = target.lastIndexOf(':')
  return [target.slice(0, i).replace(/^\[|\]$/g, ''), Number(target.slice(i + 1))]
}

function ipv6(b) {
  const parts = []
  for (let i = 0; i < 16; i += 2) parts.push(b.readUInt16BE(i).toString(16))
  return parts.join(':')
}

const PROXY_VARS = ['http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY', 'no_proxy', 'NO_PROXY']

/**
 * Runs `fn` with exactly the given proxy variables set (all others unset), then restores
 * the environment. The transport reads the environment when it is constructed, so
 * `fn` constructs it.
 */
export function withProxyEnv(vars, fn) {
  const saved = Object.fromEntries(PROXY_VARS.map((k) => [k, process.env[k]]))
  try {
    for (const k of PROXY_VARS) delete process.env[k]
    Object.assign(process.env, vars)
    return fn()
  } finally {
    for (const k of PROXY_VARS) {
      if (saved[k] === undefined) delete process.env[k]
      else process.env[k] = saved[k]
    }
  }
}
