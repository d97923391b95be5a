// A transport connected to the emulator given on the command line (domain, appId,
// appSecret), with nothing to do: prints "ready" once connected, then idles until killed.
// Its parent counts how often this process's tokio worker is put on a CPU
// (__test__/runtime.test.mjs).
const { FeishuTransport } = require('../..')

const [domain, appId, appSecret] = process.argv.slice(2)
const t = new FeishuTransport({
  appId, appSecret, domain, logLevel: 'silent', proxy: null,
  onEvent: () => {},
  onReady: () => console.log('ready'),
})
t.start()
