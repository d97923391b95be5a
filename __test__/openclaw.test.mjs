// OpenClaw for real (issue 16): OpenClaw's monitor loop driving the compat WSClient exactly
// as OpenClaw's createFeishuWSClient configures it (a model of @openclaw/feishu 2026.9.5
// with examples/openclaw/compat.patch applied: httpInstance rewriting a private base URL,
// an opaque agent, wsConfig.pingTimeout 3, the four callbacks, the durable-ingress
// wrapper), and the native monitorWebSocket of examples/openclaw, against the emulator.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import Lark from '@larksuiteoapi/node-sdk'
import { FeishuEmulator } from '../index.js'
import { monitorWebSocket as openclawMonitor, durableIngress } from './support/openclaw-model.mjs'
import { clearProxyEnv, loadExample, privateDeployment, PREFIX } from './support/openclaw-harness.mjs'
import { waitFor } from './helpers.mjs'

const reply = JSON.parse(readFileSync(new URL('../fixtures/events/card-action-reply.json', import.meta.url), 'utf8'))
const samples = FeishuEmulator.samples()
const TERMINAL_RE = /^WebSocket reconnect exhausted after \d+ attempts?/

clearProxyEnv()
const savedCa = process.env.NODE_EXTRA_CA_CERTS
after(() => {
  if (savedCa === undefined) delete process.env.NODE_EXTRA_CA_CERTS
  else process.env.NODE_EXTRA_CA_CERTS = savedCa
})

/**
 * Runs one monitor (`kind`: 'compat' = OpenClaw's loop over compat, 'native' = the
 * example) until stop(). Returns what OpenClaw would see: status patches, log lines,
 * handled messages, admissions, and the times clients were created.
 */
async function runMonitor(kind, { appSecret, admit = async () => {}, emulatorOptions = {} } = {}) {
  const setup = kind === 'compat' ? await privateDeployment(emulatorOptions) : null
  const emulator = setup ? setup.emulator : await FeishuEmulator.start(emulatorOptions)
  if (setup) process.env.NODE_EXTRA_CA_CERTS = setup.caFile
  const received = []
  const dispatcher = new Lark.EventDispatcher({ loggerLevel: Lark.LoggerLevel.error }).register({
    'im.message.receive_v1': async (data) => {
      received.push(data)
    },
    'card.action.trigger': async () => reply,
  })
  const ingress = durableIngress(dispatcher, admit)
  const patches = []
  const logs = []
  const created = []
  const runtime = {
    log: (m) => {
      logs.push(m)
      if (m.endsWith('starting WebSocket connection...')) created.push(Date.now())
    },
    error: (m) => logs.push(m),
    exit: () => {
      throw new Error('exit')
    },
  }
  // OpenClaw passes no logger: the SDK (here compat) writes to the console. Captured.
  const sdkLines = []
  const saved = {}
  for (const level of ['error', 'warn', 'info', 'debug']) {
    saved[level] = console[level]
    console[level] = (...m) => sdkLines.push(m.join(' '))
  }
  const ac = new AbortController()
  const account = {
    accountId: 'acct',
    appId: emulator.appId,
    appSecret: appSecret ?? emulator.appSecret,
    domain: setup ? setup.base : emulator.domain,
  }
  const params = {
    account,
    accountId: 'acct',
    runtime,
    abortSignal: ac.signal,
    eventDispatcher: ingress.eventDispatcher,
    setSocketTerminator: ingress.setSocketTerminator,
    statusSink: (p) => patches.push({ ...p }),
  }
  const monitor = kind === 'compat' ? openclawMonitor({ ...params, agent: setup.agent }) : loadExample().monitor.monitorWebSocket(params)
  let settled = null
  monitor.then((v) => (settled = { value: v }), (e) => (settled = { error: e }))
  return {
    emulator,
    setup,
    patches,
    logs,
    received,
    created,
    sdkLines,
    ready: () => waitFor(() => patches.some((p) => p.lifecycle === 'ready'), { what: 'a ready patch', timeoutMs: 10_000 }),
    settled: () => settled,
    async stop() {
      ac.abort()
      await waitFor(() => settled, { what: 'monitorWebSocket to return after abort' })
      Object.assign(console, saved)
      await waitFor(() => emulator.connections().length === 0, { what: 'the socket to close' })
      if (setup) await setup.close()
      else await emulator.close()
      assert.deepEqual(settled, { value: undefined }, 'monitorWebSocket never rejects')
    },
  }
}

/** Every line and patch OpenClaw would log or store, for secret checks. */
const everything = (m) => [...m.logs, ...m.sdkLines, ...m.patches.map((p) => JSON.stringify(p))]

for (const kind of ['compat', 'native']) {
  test(`${kind}: events and card replies go through OpenClaw's monitor`, async () => {
    const m = await runMonitor(kind)
    try {
      await m.ready()
      const ready = m.patches.find((p) => p.lifecycle === 'ready')
      assert.equal(ready.connected, true)
      assert.equal(ready.running, true)
      assert.equal(ready.lastError, null)
      assert.deepEqual(m.patches.filter((p) => p.lifecycle === 'recovering'), [], 'no "recovering" before the first connection')
      if (kind === 'compat') {
        // Discovery went through OpenClaw's httpInstance, to the private base URL.
        assert.ok(m.setup.discoveries.length >= 1)
        assert.equal(m.setup.discoveries[0].path, `${PREFIX}/callback/ws/endpoint`)
        assert.ok(m.sdkLines.some((l) => l.includes("agent's proxy could not be read")) === false, 'the debug line stays below loggerLevel info')
      }
      const id = m.emulator.pushSample('message-receive-text')
      assert.equal((await m.emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
      assert.equal(m.received[0].message.message_id, samples['message-receive-text'].event.message.message_id)
      const card = m.emulator.pushSample('card-action-trigger')
      const ack = await m.emulator.waitForAck(card, { timeoutMs: 5000 })
      assert.equal(ack.code, 200)
      assert.deepEqual(JSON.parse(ack.data), reply)
      assert.ok(m.logs.includes('feishu[acct]: WebSocket client started'), m.logs.join('\n'))
    } finally {
      await m.stop()
    }
  })

  test(`${kind}: a dropped connection publishes recovering once, then ready, without recreating the client`, async () => {
    const m = await runMonitor(kind)
    try {
      await m.ready()
      m.emulator.dropConnections()
      await waitFor(() => m.patches.filter((p) => p.lifecycle === 'ready').length >= 2, { what: 'ready again' })
      const lifecycles = m.patches.map((p) => p.lifecycle)
      assert.deepEqual(lifecycles, ['ready', 'recovering', 'ready'])
      assert.deepEqual(m.patches[1], { connected: false, lifecycle: 'recovering', lastEventAt: m.patches[1].lastEventAt })
      assert.equal(m.created.length, 1, 'the loss was handled inside the client')
      // The loss reached onError as a recoverable error, which OpenClaw logs as such.
      const recoverable = m.logs.filter((l) => l.startsWith('feishu[acct]: WebSocket SDK reported recoverable error: '))
      assert.ok(recoverable.length >= 1, m.logs.join('\n'))
      if (kind === 'compat') assert.match(recoverable[0], /recoverable error: WebSocket error, retrying in \d+ ms \(attempt 1\): DISCONNECTED/)
    } finally {
      await m.stop()
    }
  })

  test(`${kind}: a wrong secret blocks the channel, and recreated clients back off more and more`, async () => {
    const secret = `wrong-secret-${kind}-${Date.now()}`
    const m = await runMonitor(kind, { appSecret: secret })
    try {
      // Four clients (compat: the delays are OpenClaw's 1 s plus compat's growing hold-off
      // before a recreated client's first attempt) or three (native: 1 s, 2 s).
      const clients = kind === 'compat' ? 4 : 3
      await waitFor(() => m.created.length >= clients, { what: `${clients} clients`, timeoutMs: 20_000 })
      const gaps = m.created.slice(1).map((t, i) => t - m.created[i])
      for (let i = 1; i < gaps.length; i++) assert.ok(gaps[i] > gaps[i - 1] + 500, `gaps grow: ${gaps.join(', ')} ms`)
      assert.ok(gaps[0] >= 900, `no tight loop: ${gaps.join(', ')} ms`)
      if (kind === 'compat') {
        // Discovery itself is not hammered: requests to Feishu are spaced more and more.
        const at = m.setup.discoveries.map((d) => d.at)
        const sent = at.slice(1).map((t, i) => t - at[i])
        assert.ok(sent.length >= 2 && sent.every((g) => g >= 1500) && sent[1] > sent[0], `discovery gaps: ${sent.join(', ')} ms`)
      }
      const blocked = m.patches.filter((p) => p.lifecycle === 'blocked')
      assert.ok(blocked.length >= 1)
      assert.equal(blocked[0].terminalDisconnect, true)
      assert.equal(blocked[0].connected, false)
      assert.match(blocked[0].lastError, /AUTH_FAILED/)
      assert.ok(!m.patches.some((p) => p.lifecycle === 'ready'))
      const ended = m.logs.filter((l) => l.includes('WebSocket connection ended, recreating client in '))
      assert.ok(ended.length >= 2, m.logs.join('\n'))
      assert.match(ended[0], /recreating client in 1000ms: /)
      assert.match(ended[1], /recreating client in (1000|2000)ms: /)
      if (kind === 'compat') {
        const text = ended[0].split('recreating client in 1000ms: ')[1]
        assert.match(text, TERMINAL_RE)
        assert.match(text, /^WebSocket reconnect exhausted after 1 attempt: stopped: Feishu rejected the app credentials, and retrying cannot fix that \(AUTH_FAILED: /)
      }
      for (const line of everything(m)) assert.ok(!line.includes(secret), line)
    } finally {
      await m.stop()
    }
  })

  test(`${kind}: the socket terminator leaves the event unacked and its re-delivery is acked once`, async () => {
    let admissions = 0
    const m = await runMonitor(kind, {
      emulatorOptions: { ackDeadlineMs: 300 },
      admit: async () => {
        if (++admissions === 1) throw new Error('SQLite admission failed')
      },
    })
    try {
      await m.ready()
      const id = m.emulator.pushSample('message-receive-text')
      const ack = await m.emulator.waitForAck(id, { timeoutMs: 8000, code: 200 })
      assert.equal(ack.delivery, 2)
      assert.deepEqual(m.emulator.acks().map((a) => a.code), [200], 'the failed admission was never acked')
      assert.equal(admissions, 2)
      assert.equal(m.received.length, 1)
      assert.equal(m.created.length, 1, 'the terminator cut the socket; the client reconnected by itself')
      await waitFor(() => m.patches.filter((p) => p.lifecycle === 'ready').length >= 2, { what: 'ready after the cut' })
    } finally {
      await m.stop()
    }
  })

  test(`${kind}: abort stops OpenClaw's monitor and the process exits by itself`, async () => {
    const setup = kind === 'compat' ? await privateDeployment() : null
    const emulator = setup ? setup.emulator : await FeishuEmulator.start()
    try {
      const child = spawn(process.execPath, [fileURLToPath(new URL('./children/openclaw-abort.mjs', import.meta.url)), kind], {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: {
          ...process.env,
          OPENCLAW_TEST_APP_ID: emulator.appId,
          OPENCLAW_TEST_APP_SECRET: emulator.appSecret,
          OPENCLAW_TEST_DOMAIN: setup ? setup.base : emulator.domain,
          ...(setup ? { NODE_EXTRA_CA_CERTS: setup.caFile } : {}),
        },
      })
      let out = ''
      let err = ''
      child.stdout.on('data', (d) => (out += d))
      child.stderr.on('data', (d) => (err += d))
      const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
      await waitFor(() => out.includes('ready'), { what: `the child's ready (${err})`, timeoutMs: 15_000 })
      const abortedAt = Date.now()
      child.stdin.end('abort\n')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      const { code, signal } = await exited
      clearTimeout(timer)
      assert.equal(signal, null, `killed: the process did not exit by itself\n${out}\n${err}`)
      assert.equal(code, 0, err)
      assert.match(out, /returned/)
      assert.ok(Date.now() - abortedAt < 8000)
      await waitFor(() => emulator.connections().length === 0, { what: 'the socket to close' })
    } finally {
      if (setup) await setup.close()
      else await emulator.close()
    }
  })
}
