// Shared test helpers: an emulator + transport pair, and waiting for conditions (never
// fixed sleeps).
import { FeishuTransport, FeishuEmulator } from '../index.js'

/** Polls `cond` until it returns a truthy value; rejects after `timeoutMs`. */
export async function waitFor(cond, { timeoutMs = 10_000, intervalMs = 10, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await cond()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

/** A promise and its resolver. */
export function deferred() {
  let resolve, reject
  const promise = new Promise((res, rej) => { resolve = res; reject = rej })
  return { promise, resolve, reject }
}

/** Options that make a transport quick and quiet against the emulator. */
export function fastOptions(emulator, extra = {}) {
  return {
    appId: emulator.appId,
    appSecret: emulator.appSecret,
    domain: emulator.domain,
    logLevel: 'silent',
    // Loopback tests must not depend on the machine's proxy variables.
    proxy: null,
    reconnect: { initialDelayMs: 20, maxDelayMs: 200, jitter: 0 },
    timeouts: { discoveryMs: 2000, handshakeMs: 2000, pongMs: 2000, closeMs: 500 },
    onEvent: () => {},
    ...extra,
  }
}

/**
 * Starts an emulator and a transport connected to it. Returns the pieces plus `events`
 * (every FeishuEvent seen) and `stop()`, which closes both.
 */
export async function startPair({ emulator: emulatorOptions = {}, transport: extra = {}, onEvent } = {}) {
  const emulator = await FeishuEmulator.start(emulatorOptions)
  const events = []
  const ready = deferred()
  const transport = new FeishuTransport(fastOptions(emulator, {
    onReady: () => ready.resolve(),
    ...extra,
    onEvent: async (e) => {
      events.push(e)
      return onEvent ? onEvent(e) : undefined
    },
  }))
  const running = transport.start()
  running.catch(() => {})
  await Promise.race([ready.promise, running.then((r) => { throw new Error(`start() settled before ready: ${JSON.stringify(r)}`) })])
  return {
    emulator,
    transport,
    events,
    running,
    async stop() {
      await transport.close({ force: true })
      await emulator.close()
    },
  }
}

export { FeishuTransport, FeishuEmulator }
