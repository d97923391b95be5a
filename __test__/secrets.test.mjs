// Every log line and every error message of a session full of failures is free of the
// app secret, the socket URL's access_key and ticket, and bearer tokens.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FeishuTransport, FeishuEmulator } from '../index.js'
import { deferred, fastOptions, waitFor } from './helpers.mjs'

test('no secret reaches a log line or an error message', async () => {
  const secret = 'S3cr3t-app-secret-value'
  const emulator = await FeishuEmulator.start({ appSecret: secret, ackDeadlineMs: 200, maxRedeliveries: 1 })
  const lines = []
  const errors = []
  const collect = (e) => { for (let x = e; x; x = x.cause) errors.push(`${x.code} ${x.message}`) }
  try {
    // wrong secret: a terminal failure with a message about it
    const bad = new FeishuTransport(fastOptions(emulator, { appSecret: `${secret}-wrong`, logLevel: 'debug', logger: (l, m) => lines.push(m), onError: collect }))
    await bad.start().catch(collect)

    emulator.failDiscovery({ count: 1, kind: 'http-status', status: 500 })
    emulator.failDiscovery({ count: 1, kind: 'body', body: `{"oops": "Bearer abc.def.ghi access_key=deadbeef ticket=t-1 ${secret}"}` })
    emulator.rejectHandshakes({ count: 1, httpStatus: 500, handshakeStatus: 500, msg: `nope ${secret}` })
    const ready = deferred()
    const t = new FeishuTransport(fastOptions(emulator, {
      logLevel: 'debug',
      logger: (l, m) => lines.push(m),
      onError: collect,
      onReady: ready.resolve,
      onEvent: () => { throw new Error(`handler failed: Authorization: Bearer tok.en.value appSecret=${secret}`) },
    }))
    const running = t.start()
    await ready.promise
    const id = emulator.pushSample('message-receive-text')
    await emulator.waitForAck(id, { timeoutMs: 5000, code: 500 })
    emulator.dropConnections(null, false)
    await waitFor(() => t.status().counters.reconnects === 1 && t.status().connected, { what: 'reconnect' })
    await t.close()
    await running
    const status = JSON.stringify(t.status())

    assert.ok(lines.length > 10, `only ${lines.length} lines`)
    for (const text of [...lines, ...errors, status]) {
      assert.ok(!text.includes(secret), text)
      assert.ok(!/access_key=(?!\[redacted\])/.test(text), text)
      assert.ok(!/ticket=(?!\[redacted\])/.test(text), text)
      assert.ok(!/Bearer (?!\[redacted\])/.test(text), text)
      assert.ok(!text.includes('\n'), text)
    }
  } finally {
    await emulator.close()
  }
})
