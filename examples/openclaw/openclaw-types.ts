// Stand-ins for the pieces of OpenClaw (@openclaw/feishu 2026.9.5, extensions/feishu/src)
// that monitor-websocket.ts and client.ts use, with OpenClaw's shapes, so the example
// type-checks and runs on its own. In OpenClaw they are imported from where the comment
// on each says; nothing here is meant to replace them.
import type { FeishuTransport } from 'feishu-transport'

/** `openclaw/plugin-sdk` RuntimeEnv. */
export type RuntimeEnv = {
  log: typeof console.log
  error: typeof console.error
  exit: (code: number) => never
}

/** `./types.js` ResolvedFeishuAccount: the fields the transport reads. */
export type FeishuDomain = 'feishu' | 'lark' | (string & {})
export type ResolvedFeishuAccount = {
  accountId: string
  appId?: string
  appSecret?: string
  domain?: FeishuDomain
  encryptKey?: string
  verificationToken?: string
}

/** `./monitor.js` FeishuStatusSink: partial channel status patches. */
export type FeishuStatusPatch = {
  running?: boolean
  connected?: boolean
  lifecycle?: 'ready' | 'recovering' | 'blocked'
  terminalDisconnect?: boolean
  lastConnectedAt?: number | null
  lastEventAt?: number | null
  lastTransportActivityAt?: number | null
  lastError?: string | null
}
export type FeishuStatusSink = (patch: FeishuStatusPatch) => void

/** The `invoke` of `Lark.EventDispatcher` (or of the durable-ingress wrapper around it). */
export type EventDispatcherLike = {
  invoke(data: unknown, params?: { needCheck?: boolean }): Promise<unknown>
}

/** `./monitor.transport.ts` MonitorTransportParams (the webhook-only member left out). */
export type MonitorTransportParams = {
  account: ResolvedFeishuAccount
  accountId: string
  runtime?: RuntimeEnv
  abortSignal?: AbortSignal
  eventDispatcher: EventDispatcherLike
  setSocketTerminator?: (terminate: (() => void) | undefined) => void
  statusSink?: FeishuStatusSink
}

/** `openclaw/plugin-sdk/gateway-runtime` channelReadyPatch. */
export function channelReadyPatch<T extends FeishuStatusPatch>(extras: T): FeishuStatusPatch & T {
  return { running: true, connected: true, lifecycle: 'ready', lastConnectedAt: Date.now(), lastError: null, terminalDisconnect: undefined, ...extras }
}

/** `openclaw/plugin-sdk/gateway-runtime` channelBlockedPatch. */
export function channelBlockedPatch<T extends FeishuStatusPatch>(lastError: string, extras: T): FeishuStatusPatch & T {
  return { lifecycle: 'blocked', terminalDisconnect: true, lastError, ...extras }
}

/** `./monitor.state.ts` (with native.patch): the live transport of each account, and the bot identity kept across cycles. */
export const wsClients = new Map<string, FeishuTransport>()
export const botOpenIds = new Map<string, string>()
export const botNames = new Map<string, string>()
export function clearFeishuBotIdentityState(accountId: string): void {
  botOpenIds.delete(accountId)
  botNames.delete(accountId)
}

/** `./async.ts` waitForAbortableDelay: true after the delay, false once aborted. */
export function waitForAbortableDelay(delayMs: number, abortSignal?: AbortSignal): Promise<boolean> {
  if (abortSignal?.aborted) return Promise.resolve(false)
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer)
      resolve(false)
    }
    const timer = setTimeout(() => {
      abortSignal?.removeEventListener('abort', onAbort)
      resolve(true)
    }, delayMs)
    timer.unref?.()
    abortSignal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** `./monitor.transport.ts` getFeishuWsReconnectDelayMs: 1 s doubling to 30 s. */
export function getFeishuWsReconnectDelayMs(attempt: number): number {
  return Math.min(1_000 * 2 ** Math.max(0, attempt - 1), 30_000)
}

/**
 * `./monitor.transport.ts` formatFeishuWsErrorForLog, reduced: one line of at most 500
 * characters. (OpenClaw's also redacts; the transport's messages are redacted already.)
 */
export function formatFeishuWsErrorForLog(err: unknown): string {
  const raw = err instanceof Error ? err.message || err.name : String(err)
  const line = raw.replace(/[\u0000-\u001f\u007f\s]+/g, ' ').trim()
  if (!line) return 'unknown error'
  return line.length <= 500 ? line : `${line.slice(0, 500)}...`
}
