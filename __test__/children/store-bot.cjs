// One bot process for __test__/store.test.mjs: a transport with the `dedupe.store` given
// in argv[2] (JSON). Prints `ready`, then `handled <eventId>` when its handler is called
// and `returned <eventId>` as the handler returns (`{by: name}`, or never with `hang`).
// Closes and exits when stdin ends.
const { FeishuTransport } = require('../../index.js')

const o = JSON.parse(process.argv[2])
const say = (line) => process.stdout.write(`${line}\n`)
const transport = new FeishuTransport({
  appId: o.appId,
  appSecret: o.appSecret,
  domain: o.domain,
  proxy: null,
  logLevel: 'warn',
  logger: (level, message) => say(`log ${level} ${message}`),
  reconnect: { initialDelayMs: 20, maxDelayMs: 200, jitter: 0 },
  handlerTimeoutMs: o.handlerTimeoutMs,
  dedupe: { store: o.store },
  onReady: () => say('ready'),
  onEvent: (e) => {
    say(`handled ${e.eventId}`)
    if (o.hang) return new Promise(() => {})
    // Printed as the handler returns: the ack (and the store write before it) follows.
    setImmediate(() => say(`returned ${e.eventId}`))
    return { by: o.name }
  },
})
transport.start().catch((e) => say(`failed ${e.code} ${e.message}`))
process.stdin.on('end', () => transport.close({ force: true }).then(() => process.exit(0)))
process.stdin.resume()
