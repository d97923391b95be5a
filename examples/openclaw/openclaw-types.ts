// The few OpenClaw shapes monitor-websocket.ts touches, declared here so the example
// type-checks on its own (in OpenClaw they come from the extension's own modules).
import type { FeishuTransport, FeishuTransportOptions } from 'feishu-transport'

export interface StatusPatch {
  running?: boolean
  connected?: boolean
  lifecycle?: 'ready' | 'recovering' | 'blocked'
  lastConnectedAt?: number
  lastEventAt?: number
  lastError?: string | null
  terminalDisconnect?: boolean
}

export interface FeishuAccount {
  appId: string
  appSecret: string
  domain?: string
  proxy?: string | null
}

export interface MonitorTransportParams {
  account: FeishuAccount
  accountId: string
  runtime?: { log?: (msg: string) => void; error?: (msg: string) => void }
  abortSignal?: AbortSignal
  eventDispatcher: { invoke(data: unknown, params?: { needCheck?: boolean }): Promise<unknown> }
  setSocketTerminator?: (terminator: (() => void) | undefined) => void
  statusSink?: (patch: StatusPatch) => void
}

export const wsClients = new Map<string, FeishuTransport>()

export function clearFeishuBotIdentityState(accountId: string): void {
  void accountId
}

export function channelReadyPatch(p: { lastConnectedAt: number; lastEventAt: number }): StatusPatch {
  return { running: true, connected: true, lifecycle: 'ready', lastError: null, terminalDisconnect: undefined, ...p }
}

export function channelBlockedPatch(error: string, p: { connected: false; lastEventAt: number }): StatusPatch {
  return { lifecycle: 'blocked', terminalDisconnect: true, lastError: error, ...p }
}

export function feishuTransportOptions(account: FeishuAccount): Omit<FeishuTransportOptions, 'onEvent'> {
  return {
    appId: account.appId,
    appSecret: account.appSecret,
    domain: account.domain,
    userAgent: 'openclaw-feishu-builtin',
    timeouts: { discoveryMs: 15_000, pongMs: 10_000 },
  }
}
