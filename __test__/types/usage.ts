// Compiled with `tsc --noEmit` by types.test.mjs: if index.d.ts drifts from this usage of
// the documented API, the suite fails.
import { FeishuTransport, FeishuTransportError, FeishuEmulator, type FeishuEvent, type TransportStatus } from 'feishu-transport'

async function main(): Promise<void> {
  const emulator = await FeishuEmulator.start({ appId: 'cli_a1b2c3d4e5f60718', appSecret: 'x' })
  const t = new FeishuTransport({
    appId: 'cli_a1b2c3d4e5f60718',
    appSecret: 'x',
    domain: emulator.domain,
    onEvent: async (e: FeishuEvent) => (e.eventType === 'card.action.trigger' ? { toast: { type: 'info', content: 'ok' } } : undefined),
    onReady: ({ connection }) => { void connection },
    onReconnecting: ({ connection, attempt, delayMs, error }) => { void connection; void attempt; void delayMs; void error?.code },
    onReconnected: () => {},
    onError: (err: FeishuTransportError) => { if (err.terminal) void err.feishuCode },
    onStatus: (s: TransportStatus) => { void s.counters.events },
    logger: (level, message) => { void level; void message },
    logLevel: 'warn',
    reconnect: { initialDelayMs: 100, maxDelayMs: 1000, maxAttempts: 5 },
    timeouts: { discoveryMs: 1000, pongMs: 5000 },
    maxConcurrentHandlers: 16,
    connections: 2,
    proxy: 'socks5h://user:pass@proxy.corp:1080',
    tls: { caPem: '-----BEGIN CERTIFICATE-----\n…', systemRoots: true },
    dedupe: { ttlMs: 60_000 },
  })
  const direct = new FeishuTransport({ appId: 'cli_a1b2c3d4e5f60718', appSecret: 'x', onEvent: () => {}, proxy: null, tls: { caPem: new Uint8Array(0) } })
  void direct
  const ac = new AbortController()
  const r: { reason: 'closed' | 'aborted' } = await t.start({ signal: ac.signal })
  void r
  t.dropConnection('test')
  t.dropConnection('test', { connection: 1 })
  const s = t.status()
  const first: { index: number; connected: boolean; attempt: number; connectionId: string | null } = s.connections[0]
  void first
  const state: 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'stopped' | 'failed' = s.state
  void state
  await t.close({ force: true, drainMs: 100 })
  const id: string = emulator.pushEvent({ schema: '2.0' })
  const ack = await emulator.waitForAck(id, { timeoutMs: 1000 })
  void ack.code
  await emulator.close()
  try {
    new FeishuTransport({ appId: 'bad', appSecret: '', onEvent() {} })
  } catch (e) {
    if (e instanceof FeishuTransportError && e.code === 'INVALID_CONFIG') void e.message
  }
}
void main
