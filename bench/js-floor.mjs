// What any JavaScript client must pay per event once the payload is in JavaScript:
// JSON.parse of a batch of bench-shaped events and building the handler's argument
// (scenario 1), and, for 200 KB events (scenario 2), creating the string from bytes plus
// JSON.parse. No transport involved; see bench/NOTES.md ("Where the time goes now").
//
//   node bench/js-floor.mjs
const head = (i) =>
  `{"schema":"2.0","header":{"event_id":"ev_${i.toString(16).padStart(24, '0')}","event_type":"im.message.receive_v1","create_time":"1764380000000","token":"emulator","app_id":"cli_b0e1c2d3e4f5a610","tenant_key":"emulator"},"event":{"sender":{"sender_id":{"open_id":"ou_emulator"},"sender_type":"user","tenant_key":"emulator"},"message":{"message_id":"om_${i}","chat_id":"oc_emulator","chat_type":"p2p","message_type":"text","content":"{\\"text\\":\\"`
const tail = '\\"}"}}}'
const payload = (i, size) => {
  const h = head(i)
  return h + 'x'.repeat(size - h.length - tail.length) + tail
}
let sink = 0

// Scenario 1: batches of 64 events of 512 B, as the transport hands them over.
const N = 64
const batches = []
for (let b = 0; b < 200; b++) {
  const parts = []
  for (let j = 0; j < N; j++) {
    const i = b * N + j
    parts.push(`[${i},"om_${i}","trace_${i}",1764380000000,${payload(i, 512)}]`)
  }
  batches.push(`[${parts.join(',')}]`)
}
const small = []
for (let k = 0; k < 7; k++) {
  const t = process.hrtime.bigint()
  for (let r = 0; r < 10; r++) {
    for (const b of batches) {
      for (const e of JSON.parse(b)) {
        const p = e[4]
        const ev = { payload: p, eventType: p.header.event_type, eventId: p.header.event_id, messageId: e[1], traceId: e[2], receivedAt: e[3] }
        sink += ev.eventId.length
      }
    }
  }
  small.push(Number(process.hrtime.bigint() - t) / (10 * 200 * N) / 1000)
}

// Scenario 2: one 200 KB event per batch, from bytes.
const bufs = []
for (let i = 0; i < 50; i++) bufs.push(Buffer.from(`[[${i},"om_${i}","trace_${i}",1764380000000,${payload(i, 204800)}]]`))
const str = []
const both = []
for (let k = 0; k < 7; k++) {
  let t = process.hrtime.bigint()
  for (let r = 0; r < 4; r++) for (const b of bufs) sink += b.toString('latin1').length
  str.push(Number(process.hrtime.bigint() - t) / 200 / 1000)
  t = process.hrtime.bigint()
  for (let r = 0; r < 4; r++) for (const b of bufs) sink += JSON.parse(b.toString('latin1'))[0][4].event.message.content.length
  both.push(Number(process.hrtime.bigint() - t) / 200 / 1000)
}
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1]
console.log(JSON.stringify({
  smallParseAndArgUsPerEvent: +median(small).toFixed(2),
  largeStringUsPerEvent: Math.round(median(str)),
  largeStringAndParseUsPerEvent: Math.round(median(both)),
  sink: sink > 0,
}))
