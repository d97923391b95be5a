// OpenClaw's `monitorWebSocket` (extensions/feishu/src/monitor.transport.ts) written against
// FeishuTransport. Today's version is ~110 lines: a supervisor loop, terminal-error regexes,
// cycle-end races and a stall watchdog around the SDK's fire-and-forget start(). Here Rust
// owns the loop, and start() settles only when the transport stops.
import { FeishuTransport, type TransportStatus } from 'feishu-transport'
import type { MonitorTransportParams, StatusPatch } from './openclaw-types'
import { channelBlockedPatch, channelReadyPatch, clearFeishuBotIdentityState, feishuTransportOptions, wsClients } from './openclaw-types'

export async function monitorWebSocket({ account, accountId, runtime, abortSignal, eventDispatcher, setSocketTerminator, statusSink }: MonitorTransportParams): Promise<void> {
  const transport = new FeishuTransport({
    ...feishuTransportOptions(account), // appId, appSecret, domain, proxy, userAgent, timeouts
    onEvent: (e) => eventDispatcher.invoke(e.payload, { needCheck: false }),
    onStatus: (s) => statusSink?.(toFeishuStatusPatch(s)),
    logger: (level, msg) => (level === 'error' || level === 'warn' ? runtime?.error ?? console.error : runtime?.log ?? console.log)(`feishu[${accountId}]: ${msg}`),
  })
  wsClients.set(accountId, transport)
  setSocketTerminator?.(() => transport.dropConnection('durable admission failed'))
  try {
    await transport.start({ signal: abortSignal }) // resolves on abort; retries forever otherwise
  } finally {
    setSocketTerminator?.(undefined)
    wsClients.delete(accountId)
    clearFeishuBotIdentityState(accountId)
  }
}

export const toFeishuStatusPatch = (s: TransportStatus): StatusPatch =>
  s.state === 'connected'
    ? channelReadyPatch({ lastConnectedAt: s.lastConnectedAt ?? Date.now(), lastEventAt: s.lastEventAt ?? Date.now() })
    : s.state === 'failed'
      ? channelBlockedPatch(s.lastError?.message ?? 'blocked', { connected: false, lastEventAt: Date.now() })
      : { connected: false, lifecycle: 'recovering', lastEventAt: Date.now(), ...(s.lastError ? { lastError: s.lastError.message } : {}) }
