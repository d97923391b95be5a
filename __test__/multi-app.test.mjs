// Ten transports with different app ids in one process are independent.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FeishuTransport, FeishuEmulator } from '../index.js'
import { deferred, fastOptions, waitFor } from './helpers.mjs'

test("ten transports are independent: one's failure touches no other", async () => {
  const apps = Array.from({ length: 10 }, (_, i) => ({ appId: `cli_${String(i).padStart(16, '0')}`, appSecret: `secret-${i}` }))
  const emulator = await FeishuEmulator.start({ apps })
  try {
    const seen = apps.map(() => [])
    const ready = apps.map(() => deferred())
    const transports = apps.map((a, i) => new FeishuTransport(fastOptions(emulator, {
      appId: a.appId,
      // app 0 has the wrong secret and must fail alone
      appSecret: i === 0 ? 'wrong' : a.appSecret,
      onReady: ready[i].resolve,
      onEvent: (e) => { seen[i].push(e.payload.event.app) },
    })))
    const runs = transports.map((t) => t.start().then((r) => ({ r }), (e) => ({ e })))
    assert.equal((await runs[0]).e.code, 'AUTH_FAILED')
    await Promise.all(ready.slice(1).map((d) => d.promise))
    const ids = apps.slice(1).map((a, k) => emulator.pushEvent({ schema: '2.0', header: { event_id: `m-${k}`, event_type: 'x' }, event: { app: a.appId } }, { appId: a.appId }))
    await Promise.all(ids.map((id) => emulator.waitForAck(id, { timeoutMs: 5000 })))
    for (let i = 1; i < 10; i++) assert.deepEqual(seen[i], [apps[i].appId])
    // dropping one app's socket disturbs only that app
    const victim = emulator.connections().find((c) => c.appId === apps[5].appId)
    emulator.dropConnections(victim.id)
    await waitFor(() => transports[5].status().counters.reconnects === 1 && transports[5].status().connected, { what: 'app 5 reconnected' })
    for (let i = 1; i < 10; i++) if (i !== 5) assert.equal(transports[i].status().counters.reconnects, 0)
    await Promise.all(transports.map((t) => t.close({ force: true })))
    for (let i = 1; i < 10; i++) assert.deepEqual((await runs[i]).r, { reason: 'closed' })
  } finally {
    await emulator.close()
  }
})
