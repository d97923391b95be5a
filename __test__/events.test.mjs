// Events reach onEvent once, parsed, in any fragment order; the ack carries the
// handler's result; failures ack 500 and the emulator re-delivers.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { startPair, waitFor } from './helpers.mjs'

const sample = (name) => JSON.parse(JSON.stringify(FeishuSamples[name]))
import { FeishuEmulator } from '../index.js'
const FeishuSamples = FeishuEmulator.samples()

test('a plain event reaches onEvent once with the parsed payload, and is acked 200', async () => {
  const p = await startPair()
  try {
    const payload = sample('message-receive-text')
    const id = p.emulator.pushEvent(payload)
    const ack = await p.emulator.waitForAck(id, { timeoutMs: 5000 })
    assert.equal(ack.code, 200)
    assert.equal(ack.data, null)
    assert.equal(p.events.length, 1)
    const e = p.events[0]
    assert.deepEqual(e.payload, payload)
    assert.equal(e.eventType, 'im.message.receive_v1')
    assert.equal(e.eventId, payload.header.event_id)
    assert.equal(e.messageId, id)
    assert.equal(typeof e.receivedAt, 'number')
    assert.ok(Number(ack.headers.biz_rt) >= 0)
  } finally {
    await p.stop()
  }
})

for (const order of ['in-order', 'reverse', 'shuffle']) {
  test(`a 4-fragment event (${order}) is reassembled and delivered once`, async () => {
    const p = await startPair()
    try {
      const payload = sample('message-receive-post')
      const id = p.emulator.pushEvent(payload, { fragments: 4, order })
      const ack = await p.emulator.waitForAck(id, { timeoutMs: 5000 })
      assert.equal(ack.code, 200)
      assert.equal(p.events.length, 1)
      assert.deepEqual(p.events[0].payload, payload)
    } finally {
      await p.stop()
    }
  })
}

test("the handler's result becomes the ack's base64 data", async () => {
  const reply = JSON.parse(readFileSync(new URL('../fixtures/events/card-action-reply.json', import.meta.url), 'utf8'))
  const p = await startPair({ onEvent: (e) => (e.eventType === 'card.action.trigger' ? reply : undefined) })
  try {
    const id = p.emulator.pushEvent(sample('card-action-trigger'))
    const ack = await p.emulator.waitForAck(id, { timeoutMs: 5000 })
    assert.equal(ack.code, 200)
    assert.deepEqual(JSON.parse(ack.data), reply)
  } finally {
    await p.stop()
  }
})

for (const [name, fail] of [
  ['throws', () => { throw new Error('boom') }],
  ['rejects', async () => { throw new Error('boom') }],
  ['returns a BigInt', () => 10n],
]) {
  test(`a handler that ${name} acks 500 and the re-delivery is handled`, async () => {
    let calls = 0
    const p = await startPair({
      emulator: { ackDeadlineMs: 300, maxRedeliveries: 3 },
      onEvent: (e) => (++calls === 1 ? fail() : { ok: true }),
    })
    try {
      const id = p.emulator.pushEvent(sample('reaction-created'))
      const failed = await p.emulator.waitForAck(id, { timeoutMs: 5000, code: 500 })
      assert.equal(failed.code, 500)
      const ok = await p.emulator.waitForAck(id, { timeoutMs: 5000, code: 200 })
      assert.deepEqual(JSON.parse(ok.data), { ok: true })
      assert.equal(calls, 2)
      assert.ok(p.transport.status().counters.failedAcks >= 1)
    } finally {
      await p.stop()
    }
  })
}

test('a text frame and garbage bytes are dropped and the connection keeps working', async () => {
  const p = await startPair()
  try {
    p.emulator.sendText('hello')
    p.emulator.sendRaw(Buffer.from([0xff, 0xff, 0xff]))
    await waitFor(() => p.transport.status().counters.droppedFrames >= 2, { what: 'dropped frames' })
    const id = p.emulator.pushEvent(sample('message-receive-text'))
    assert.equal((await p.emulator.waitForAck(id, { timeoutMs: 5000 })).code, 200)
    assert.equal(p.transport.status().counters.connects, 1)
  } finally {
    await p.stop()
  }
})
