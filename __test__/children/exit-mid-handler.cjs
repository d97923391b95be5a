// process.exit() while handlers are running must exit cleanly with the given code.
const { FeishuTransport, FeishuEmulator } = require('../..')
;(async () => {
  const emulator = await FeishuEmulator.start()
  let seen = 0
  const t = new FeishuTransport({
    appId: emulator.appId, appSecret: emulator.appSecret, domain: emulator.domain, logLevel: 'silent', proxy: null,
    onEvent: async () => {
      if (++seen === 20) process.exit(7)
      await new Promise((r) => setTimeout(r, 5))
    },
    onReady: () => {
      for (let i = 0; i < 100; i++) emulator.pushEvent({ schema: '2.0', header: { event_id: `x${i}`, event_type: 'x' }, event: {} })
    },
  })
  await t.start()
})()
