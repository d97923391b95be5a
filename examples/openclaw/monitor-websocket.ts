// OpenClaw's `monitorWebSocket` (extensions/feishu/src/monitor.transport.ts, @openclaw/feishu
// 2026.9.5) on FeishuTransport, with OpenClaw's contract kept:
// - it never rejects, and returns only on abort;
// - the same status patches at the same moments: ready (channelReadyPatch) when a
//   connection comes up, "recovering" once per lost connection (never before the first
//   one, never on abort), blocked (channelBlockedPatch) when the transport stops on a
//   terminal error, and the start-failure patch when the transport cannot be created;
// - the same log lines (texts OpenClaw's tests and users read), the socket terminator
//   installed per cycle and cleared at each cycle end, wsClients and the bot identity
//   handled as OpenClaw handles them (identity kept across cycles, cleared on exit);
// - a terminal error (wrong credentials) recreates the transport after 1 s doubling to
//   30 s, reset only once a connection worked; recoverable ones are retried inside the
//   transport, with its own backoff, and logged;
// - wsConfig.pingTimeout (3 s) is the transport's pong timeout (see client.ts).
import { FeishuTransport, FeishuTransportError } from 'feishu-transport'
import { createFeishuTransport } from './client'
import type { MonitorTransportParams } from './openclaw-types'
import {
  channelBlockedPatch,
  channelReadyPatch,
  clearFeishuBotIdentityState,
  formatFeishuWsErrorForLog,
  getFeishuWsReconnectDelayMs,
  waitForAbortableDelay,
  wsClients,
} from './openclaw-types'

/** OpenClaw's log form of an error, with the transport's code in front of its message. */
function formatError(err: unknown): string {
  return formatFeishuWsErrorForLog(err instanceof FeishuTransportError ? new Error(`${err.code}: ${err.message}`) : err)
}

/** Resolves on abort; never, without a signal (OpenClaw's cycle wait). */
function waitForAbort(abortSignal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (abortSignal?.aborted) return resolve()
    abortSignal?.addEventListener('abort', () => resolve(), { once: true })
  })
}

export async function monitorWebSocket({
  account,
  accountId,
  runtime,
  abortSignal,
  eventDispatcher,
  setSocketTerminator,
  statusSink,
}: MonitorTransportParams): Promise<void> {
  const log = runtime?.log ?? console.log
  const error = runtime?.error ?? console.error

  const cleanup = (transport: FeishuTransport | undefined, clearIdentity: boolean) => {
    if (transport) {
      // Settles at once when the transport has stopped already; never throws.
      transport.close().catch((err: unknown) => {
        error(`feishu[${accountId}]: error closing WebSocket client: ${formatFeishuWsErrorForLog(err)}`)
      })
    }
    wsClients.delete(accountId)
    if (clearIdentity) clearFeishuBotIdentityState(accountId)
  }

  let attempt = 0
  while (!abortSignal?.aborted) {
    let transport: FeishuTransport | undefined
    let connected = false
    const publishWsConnected = () => {
      connected = true
      // A connection that worked starts a new series of recreations.
      attempt = 0
      const connectedAt = Date.now()
      statusSink?.(channelReadyPatch({ lastConnectedAt: connectedAt, lastEventAt: connectedAt }))
    }
    try {
      log(`feishu[${accountId}]: starting WebSocket connection...`)
      transport = createFeishuTransport(account, {
        onEvent: (event) => eventDispatcher.invoke(event.payload, { needCheck: false }),
        onReady: publishWsConnected,
        onReconnected: publishWsConnected,
        // Called for every retry; OpenClaw's status says "recovering" once per lost
        // connection, as the SDK's onReconnecting did.
        onReconnecting: () => {
          if (!connected) return
          connected = false
          statusSink?.({ connected: false, lifecycle: 'recovering', lastEventAt: Date.now() })
        },
        onError: (err) => {
          // Terminal errors end start() below; these are retried by the transport.
          if (!err.terminal) {
            error(`feishu[${accountId}]: WebSocket SDK reported recoverable error: ${formatError(err)}`)
          }
        },
        logger: (level, message) => (level === 'error' || level === 'warn' ? error : log)(`feishu[${accountId}]: ${message}`),
      })
    } catch (err) {
      // The transport could not be created (credentials missing, options refused).
      setSocketTerminator?.(undefined)
      cleanup(undefined, false)
      const terminal = err instanceof FeishuTransportError && err.terminal
      statusSink?.({
        connected: false,
        lifecycle: terminal ? 'blocked' : 'recovering',
        ...(terminal ? { terminalDisconnect: true } : {}),
        lastEventAt: Date.now(),
        lastError: formatError(err),
      })
      attempt += 1
      const delayMs = getFeishuWsReconnectDelayMs(attempt)
      error(`feishu[${accountId}]: WebSocket start failed, retrying in ${delayMs}ms: ${formatError(err)}`)
      if (!(await waitForAbortableDelay(delayMs, abortSignal))) break
      continue
    }

    const live = transport
    // The durable ingress calls this when it could not persist an event: the socket is
    // cut without acking it, so Feishu re-delivers it, and the transport reconnects.
    setSocketTerminator?.(() => live.dropConnection('durable admission failed'))
    wsClients.set(accountId, live)
    log(`feishu[${accountId}]: WebSocket client started`)
    let ended: unknown
    try {
      // Settles only when the transport stops: on abort, or on a terminal error.
      await live.start({ signal: abortSignal })
    } catch (err) {
      ended = err
    }
    setSocketTerminator?.(undefined)
    if (ended === undefined) {
      // Stopped by abort (or by someone closing it through wsClients: wait for abort,
      // as OpenClaw's cycle does).
      await waitForAbort(abortSignal)
      log(`feishu[${accountId}]: abort signal received, stopping`)
      cleanup(live, true)
      return
    }
    cleanup(live, false)
    if (abortSignal?.aborted) break
    // A terminal error (wrong credentials, forbidden): blocked until recreated.
    statusSink?.(channelBlockedPatch(formatError(ended), { connected: false, lastEventAt: Date.now() }))
    attempt += 1
    const delayMs = getFeishuWsReconnectDelayMs(attempt)
    error(`feishu[${accountId}]: WebSocket connection ended, recreating client in ${delayMs}ms: ${formatError(ended)}`)
    if (!(await waitForAbortableDelay(delayMs, abortSignal))) break
  }
  cleanup(undefined, true)
  setSocketTerminator?.(undefined)
}
