// A model of the OpenClaw code the compat WSClient has to run under: @openclaw/feishu
// 2026.9.5's createFeishuWSClient and createFeishuHttpInstance (client.ts), its durable
// ingress wrapper (monitor.account.ts) and monitorWebSocket (monitor.transport.ts), with
// examples/openclaw/compat.patch applied. Written for these tests from reading those
// sources: the same options, loop, constants, log texts and status patches; OpenClaw's
// plugin runtime, SQLite queue and redaction details are left out.
import Lark from '@larksuiteoapi/node-sdk'
import { WSClient, Domain, LoggerLevel } from '../../compat.js'
import { loadExample } from './openclaw-harness.mjs'

// OpenClaw's helpers of these names, as the example's stand-ins have them.
const { waitForAbortableDelay, getFeishuWsReconnectDelayMs: delayFor, formatFeishuWsErrorForLog: formatError } = loadExample().types

const FEISHU_SDK_ORIGIN = 'https://open.feishu.cn'
const EXHAUSTED_RE = /^WebSocket reconnect exhausted after \d+ attempts?/
const AUTORECONNECT_DISABLED = 'WebSocket connect failed and autoReconnect is disabled'

/** client.ts: the SDK's HTTP instance with a default timeout, a custom base and the proxy agent. */
export function createFeishuHttpInstance(defaultTimeoutMs, configuredDomain, agent) {
  const base = Lark.defaultHttpInstance
  const custom = configuredDomain && configuredDomain !== 'feishu' && configuredDomain !== 'lark' ? new URL(configuredDomain) : undefined
  const resolveUrl = (url) => {
    if (!custom) return url
    const requested = new URL(url)
    if (requested.origin !== FEISHU_SDK_ORIGIN) return url
    const to = new URL(custom)
    to.pathname = `${to.pathname.replace(/\/+$/, '')}${requested.pathname}`
    to.search = requested.search
    return to.toString()
  }
  const inject = (opts) => {
    const next = { timeout: defaultTimeoutMs, ...opts }
    if (typeof next.url === 'string') next.url = resolveUrl(next.url)
    if (agent) {
      next.httpAgent ??= agent
      next.httpsAgent ??= agent
      next.proxy = false
    }
    return next
  }
  return {
    request: async (opts) => base.request(inject(opts)),
    post: async (url, data, opts) => base.post(resolveUrl(url), data, inject(opts)),
  }
}

/** client.ts createFeishuWSClient, with the compat WSClient in the SDK table. */
export async function createFeishuWSClient(account, callbacks = {}, agent = undefined) {
  const { accountId, appId, appSecret, domain } = account
  if (!appId || !appSecret) throw new Error(`Feishu credentials not configured for account "${accountId}"`)
  return new WSClient({
    appId,
    appSecret,
    domain: domain === 'lark' ? Domain.Lark : Domain.Feishu,
    httpInstance: createFeishuHttpInstance(30_000, domain, agent),
    ...callbacks,
    loggerLevel: LoggerLevel.info,
    wsConfig: { pingTimeout: 3 },
    ...(agent ? { agent } : {}),
  })
}

/**
 * monitor.account.ts: the dispatcher handed to the transport is the real one with `invoke`
 * replaced; `admit` stands for the SQLite admission. A failed admission cuts the socket
 * (the terminator) and rethrows, so the event is not acked and Feishu re-delivers it.
 */
export function durableIngress(dispatcher, admit) {
  let terminator
  const invoke = async (data, params) => {
    if (data?.header?.event_type !== 'im.message.receive_v1') return dispatcher.invoke(data, params)
    try {
      await admit(data)
    } catch (err) {
      terminator?.()
      throw err
    }
    return dispatcher.invoke(data, params)
  }
  return {
    eventDispatcher: Object.assign(Object.create(dispatcher), { invoke }),
    setSocketTerminator: (t) => {
      terminator = t
    },
  }
}

function isTerminal(err) {
  const m = err.message.trim()
  return EXHAUSTED_RE.test(m) || m.startsWith(AUTORECONNECT_DISABLED)
}

function waitForCycleEnd(signal, terminalError) {
  if (signal?.aborted) return Promise.resolve('abort')
  return new Promise((resolve) => {
    let done = false
    const finish = (r) => {
      if (done) return
      done = true
      signal?.removeEventListener('abort', onAbort)
      resolve(r)
    }
    const onAbort = () => finish('abort')
    signal?.addEventListener('abort', onAbort, { once: true })
    terminalError.then(finish)
  })
}

export const wsClients = new Map()
export const botOpenIds = new Map()

/**
 * monitor.transport.ts monitorWebSocket. `hooks.created(client)` sees each client
 * created (the tests count them).
 */
export async function monitorWebSocket({ account, accountId, runtime, abortSignal, eventDispatcher, setSocketTerminator, statusSink, agent, hooks = {} }) {
  const log = runtime?.log ?? console.log
  const error = runtime?.error ?? console.error
  const cleanup = (wsClient, clearIdentity) => {
    if (wsClient) {
      try {
        wsClient.close()
      } catch (err) {
        error(`feishu[${accountId}]: error closing WebSocket client: ${formatError(err)}`)
      }
    }
    wsClients.delete(accountId)
    if (clearIdentity) botOpenIds.delete(accountId)
  }
  let attempt = 0
  while (true) {
    if (abortSignal?.aborted) break
    let wsClient
    try {
      let reportTerminalError = () => {}
      const terminalError = new Promise((resolve) => {
        reportTerminalError = resolve
      })
      const onError = (err) => {
        if (isTerminal(err)) return reportTerminalError(err)
        error(`feishu[${accountId}]: WebSocket SDK reported recoverable error: ${formatError(err)}`)
      }
      const publishConnected = () => {
        const at = Date.now()
        statusSink?.({ running: true, connected: true, lifecycle: 'ready', lastConnectedAt: at, lastError: null, terminalDisconnect: undefined, lastEventAt: at })
      }
      const publishReconnecting = () => statusSink?.({ connected: false, lifecycle: 'recovering', lastEventAt: Date.now() })
      log(`feishu[${accountId}]: starting WebSocket connection...`)
      wsClient = await createFeishuWSClient(account, { onError, onReady: publishConnected, onReconnected: publishConnected, onReconnecting: publishReconnecting }, agent)
      hooks.created?.(wsClient)
      // compat.patch: the terminator cuts the socket (no ack, re-delivery) instead of
      // closing the client for good.
      const live = wsClient
      setSocketTerminator?.(() => live?.transport?.dropConnection('durable admission failed'))
      if (abortSignal?.aborted) {
        cleanup(wsClient, true)
        break
      }
      wsClients.set(accountId, wsClient)
      await wsClient.start({ eventDispatcher })
      attempt = 0
      log(`feishu[${accountId}]: WebSocket client started`)
      const cycleEnd = await waitForCycleEnd(abortSignal, terminalError)
      if (cycleEnd === 'abort') {
        log(`feishu[${accountId}]: abort signal received, stopping`)
        cleanup(wsClient, true)
        setSocketTerminator?.(undefined)
        return
      }
      cleanup(wsClient, false)
      setSocketTerminator?.(undefined)
      if (abortSignal?.aborted) break
      statusSink?.({ lifecycle: 'blocked', terminalDisconnect: true, lastError: formatError(cycleEnd), connected: false, lastEventAt: Date.now() })
      attempt += 1
      const delayMs = delayFor(attempt)
      error(`feishu[${accountId}]: WebSocket connection ended, recreating client in ${delayMs}ms: ${formatError(cycleEnd)}`)
      if (!(await waitForAbortableDelay(delayMs, abortSignal))) break
    } catch (err) {
      cleanup(wsClient, false)
      setSocketTerminator?.(undefined)
      if (abortSignal?.aborted) break
      const terminal = err instanceof Error && isTerminal(err)
      statusSink?.({ connected: false, lifecycle: terminal ? 'blocked' : 'recovering', ...(terminal ? { terminalDisconnect: true } : {}), lastEventAt: Date.now(), lastError: formatError(err) })
      attempt += 1
      const delayMs = delayFor(attempt)
      error(`feishu[${accountId}]: WebSocket start failed, retrying in ${delayMs}ms: ${formatError(err)}`)
      if (!(await waitForAbortableDelay(delayMs, abortSignal))) break
    }
  }
  cleanup(undefined, true)
  setSocketTerminator?.(undefined)
}
