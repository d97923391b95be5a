// The compat WSClient as OpenClaw constructs and drives it.
import { WSClient, Domain, LoggerLevel } from 'feishu-transport/compat'

const client = new WSClient({
  appId: 'cli_a1b2c3d4e5f60718',
  appSecret: 'x',
  domain: Domain.Feishu,
  loggerLevel: LoggerLevel.info,
  wsConfig: { pingTimeout: 3 },
  handshakeTimeoutMs: 15_000,
  onReady: () => {},
  onError: (e: Error) => { void /^WebSocket reconnect exhausted after \d+ attempts?/.test(e.message) },
  onReconnecting: () => {},
  onReconnected: () => {},
})
void client.start({ eventDispatcher: { invoke: async (d: unknown) => d } })
const s = client.getConnectionStatus()
const st: 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'failed' = s.state
void st
void client.getReconnectInfo().nextConnectTime
client.transport?.dropConnection('x')
client.close({ force: true })
