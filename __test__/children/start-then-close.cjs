// Starts against an emulator, closes after ready: the process must exit promptly.
const { FeishuTransport, FeishuEmulator } = require('../..')
;(async () => {
  const emulator = await FeishuEmulator.start()
  let t
  t = new FeishuTransport({
    appId: emulator.appId, appSecret: emulator.appSecret, domain: emulator.domain, logLevel: 'silent', proxy: null,
    onEvent: () => {},
    onReady: async () => {
      await t.close()
      await emulator.close()
      console.log('closed at', Date.now())
    },
  })
  const r = await t.start()
  console.log('settled', JSON.stringify(r))
})()
