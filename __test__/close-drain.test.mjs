// close() drains in-flight handlers and sends their acks; force does not wait.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { deferred, startPair, waitFor } from './helpers.mjs'

const ev = (id) => ({ schema: '2.0', header: { event_id: id, event_type: 'x' }, event: {} })

test('close() waits for an in-flight handler and still sends its ack', async () => {
  const release = deferred()
  const entered = deferred()
  const p = await startPair({ onEvent: async () => { entered.resolve(); await release.promise; return { done: true } } })
  try {
    const id = p.emulator.pushEvent(ev('drain-1'))
    await entered.promise
    const closing = p.transport.close({ drainMs: 5000 })
    let closed = false
    closing.then(() => { closed = true })
    // the close is waiting on the handler
    await new Promise((r) => setImmediate(r))
    assert.equal(closed, false)
    release.resolve()
    await closing
    assert.deepEqual(await p.running, { reason: 'closed' })
    const ack = await p.emulator.waitForAck(id, { timeoutMs: 2000 })
    assert.equal(ack.code, 200)
    assert.deepEqual(JSON.parse(ack.data), { done: true })
  } finally {
    release.resolve()
    await p.emulator.close()
  }
})

test('close({force:true}) does not wait for handlers, and their acks are never sent', async () => {
  const release = deferred()
  const entered = deferred()
  const p = await startPair({ onEvent: async () => { entered.resolve(); await release.promise } })
  try {
    const id = p.emulator.pushEvent(ev('force-1'))
    await entered.promise
    await p.transport.close({ force: true })
    assert.deepEqual(await p.running, { reason: 'closed' })
    release.resolve()
    await assert.rejects(p.emulator.waitForAck(id, { timeoutMs: 300 }))
  } finally {
    release.resolve()
    await p.emulator.close()
  }
})

test('close() gives up on a handler that never settles after drainMs', async () => {
  const entered = deferred()
  const p = await startPair({ onEvent: () => { entered.resolve(); return new Promise(() => {}) } })
  try {
    p.emulator.pushEvent(ev('never-1'))
    await entered.promise
    const t0 = Date.now()
    await p.transport.close({ drainMs: 200 })
    assert.ok(Date.now() - t0 < 3000)
    assert.deepEqual(await p.running, { reason: 'closed' })
    await waitFor(() => p.emulator.connections().length === 0, { what: 'socket closed' })
  } finally {
    await p.emulator.close()
  }
})
