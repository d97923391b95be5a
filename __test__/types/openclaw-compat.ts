// The compat usage of examples/openclaw/compat.patch, as OpenClaw's extensions/feishu/src
// has it once patched (client.ts's SDK table and createFeishuWSClient, monitor.state.ts's
// wsClients, monitor.transport.ts's callbacks and socket terminator), against the real
// @larksuiteoapi/node-sdk types. It must compile strict/NodeNext.
import type { Agent } from 'node:https'
import * as Lark from '@larksuiteoapi/node-sdk'
import { WSClient as FeishuTransportWSClient } from 'feishu-transport/compat'

type FeishuDomain = 'feishu' | 'lark' | (string & {})
type ResolvedFeishuAccount = { accountId: string; appId?: string; appSecret?: string; domain?: FeishuDomain }

const FEISHU_WS_CONFIG = { pingTimeout: 3 } as const

// client.ts: the SDK table, with compat's WSClient in it.
type FeishuClientSdk = Pick<
  typeof Lark,
  'AppType' | 'Client' | 'defaultHttpInstance' | 'Domain' | 'EventDispatcher' | 'LoggerLevel'
> & { WSClient: typeof FeishuTransportWSClient }

const feishuClientSdk: FeishuClientSdk = {
  AppType: Lark.AppType,
  Client: Lark.Client,
  defaultHttpInstance: Lark.defaultHttpInstance,
  Domain: Lark.Domain,
  EventDispatcher: Lark.EventDispatcher,
  LoggerLevel: Lark.LoggerLevel,
  WSClient: FeishuTransportWSClient,
}

declare function getFeishuProxyAgent(): Promise<Agent | undefined>
declare function createFeishuHttpInstance(defaultTimeoutMs: number, configuredDomain?: FeishuDomain): Lark.HttpInstance
declare function resolveConfiguredHttpTimeoutMs(account: ResolvedFeishuAccount): number

function resolveSdkDomain(domain: FeishuDomain | undefined): Lark.Domain {
  return domain === 'lark' ? feishuClientSdk.Domain.Lark : feishuClientSdk.Domain.Feishu
}

type FeishuWsClientCallbacks = Pick<
  ConstructorParameters<typeof feishuClientSdk.WSClient>[0],
  'onError' | 'onReady' | 'onReconnected' | 'onReconnecting'
>

export async function createFeishuWSClient(
  account: ResolvedFeishuAccount,
  callbacks: FeishuWsClientCallbacks = {},
): Promise<FeishuTransportWSClient> {
  const { accountId, appId, appSecret, domain } = account
  if (!appId || !appSecret) throw new Error(`Feishu credentials not configured for account "${accountId}"`)
  const agent = await getFeishuProxyAgent()
  const defaultHttpTimeoutMs = resolveConfiguredHttpTimeoutMs(account)
  return new feishuClientSdk.WSClient({
    appId,
    appSecret,
    domain: resolveSdkDomain(domain),
    httpInstance: createFeishuHttpInstance(defaultHttpTimeoutMs, domain),
    ...callbacks,
    loggerLevel: feishuClientSdk.LoggerLevel.info,
    wsConfig: FEISHU_WS_CONFIG,
    ...(agent ? { agent } : {}),
  })
}

// The SDK's own option shapes are accepted too: appSecret optional, a logger, a source.
export const sdkShaped = new FeishuTransportWSClient({
  appId: 'cli_a1b2c3d4e5f60718',
  domain: 'https://open.example.com/prefix',
  logger: { error: () => {}, warn: () => {}, info: () => {}, debug: () => {}, trace: () => {} },
  autoReconnect: false,
  source: 'openclaw',
  handshakeTimeoutMs: 15_000,
})

// monitor.state.ts
export const wsClients = new Map<string, FeishuTransportWSClient>()

// monitor.transport.ts: the callbacks, start(), the terminator and cleanup.
export async function cycle(
  account: ResolvedFeishuAccount,
  eventDispatcher: Lark.EventDispatcher,
  setSocketTerminator?: (terminate: (() => void) | undefined) => void,
): Promise<void> {
  let wsClient: FeishuTransportWSClient | undefined
  wsClient = await createFeishuWSClient(account, {
    onError: (err: Error) => void /^WebSocket reconnect exhausted after \d+ attempts?/.test(err.message.trim()),
    onReady: () => {},
    onReconnected: () => {},
    onReconnecting: () => {},
  })
  setSocketTerminator?.(() => wsClient?.transport?.dropConnection('durable admission failed'))
  wsClients.set(account.accountId, wsClient)
  await wsClient.start({ eventDispatcher: Object.assign(Object.create(eventDispatcher) as Lark.EventDispatcher, { invoke: eventDispatcher.invoke }) })
  wsClient.close()
  wsClient.close({ force: true })
}
