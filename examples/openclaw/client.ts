// What OpenClaw's extensions/feishu/src/client.ts gains with the native API (native.patch):
// createFeishuTransport(), the FeishuTransport counterpart of createFeishuWSClient().
import { FeishuTransport, type FeishuTransportOptions } from 'feishu-transport'
import type { ResolvedFeishuAccount } from './openclaw-types'

/** `openclaw-feishu-builtin/<version>/<platform>` in OpenClaw. */
export const FEISHU_USER_AGENT = `openclaw-feishu-builtin/example/${process.platform}`

/** OpenClaw's FEISHU_WS_CONFIG: the SDK's liveness watchdog, 3 s after a ping. */
const FEISHU_WS_CONFIG = { pingTimeout: 3 } as const

export type FeishuTransportCallbacks = Pick<
  FeishuTransportOptions,
  'onEvent' | 'onReady' | 'onReconnecting' | 'onReconnected' | 'onError' | 'logger'
>

/**
 * The transport for an account. A custom domain (a private deployment) is passed as the
 * base URL itself, path prefix included: no httpInstance rewriting is needed. The proxy
 * is the environment's (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY), which is what
 * OpenClaw's ambient proxy agent reads too.
 */
export function createFeishuTransport(account: ResolvedFeishuAccount, callbacks: FeishuTransportCallbacks): FeishuTransport {
  const { accountId, appId, appSecret, domain } = account
  if (!appId || !appSecret) {
    throw new Error(`Feishu credentials not configured for account "${accountId}"`)
  }
  return new FeishuTransport({
    appId,
    appSecret,
    domain: domain ?? 'feishu',
    userAgent: FEISHU_USER_AGENT,
    logLevel: 'info',
    // The SDK's discovery timeout (its 15 s wins over OpenClaw's HTTP default), and its
    // pingTimeout watchdog in milliseconds.
    timeouts: { discoveryMs: 15_000, pongMs: FEISHU_WS_CONFIG.pingTimeout * 1_000 },
    ...callbacks,
  })
}
