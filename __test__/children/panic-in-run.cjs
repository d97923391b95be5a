// A run that panics (the test-only fault, armed by FEISHU_TRANSPORT_TEST_FAULTS=1) must
// settle start() with a FeishuTransportError, report it, and leave the transport usable.
const { FeishuTransport, FeishuEmulator } = require('../..')
const { __testPanicNextRun } = require('../../native.js')

async function main() {
  const emulator = await FeishuEmulator.start()
  const options = (extra) => ({
    appId: emulator.appId,
    appSecret: emulator.appSecret,
    domain: emulator.domain,
    proxy: null,
    logLevel: 'silent',
    onEvent() {},
    ...extra,
  })
  const errors = []
  let ready
  const isReady = new Promise((r) => { ready = r })
  const t = new FeishuTransport(options({ onError: (e) => errors.push(e.code), onReady: () => ready() }))
  const armed = __testPanicNextRun()
  const err = await t.start().then(() => null, (e) => e)
  const out = {
    armed,
    name: err && err.name,
    code: err && err.code,
    terminal: err && err.terminal,
    state: t.status().state,
    onError: errors.join(','),
  }
  // The same transport starts again: the panic freed its run slot.
  const running = t.start()
  await isReady
  await t.close()
  out.again = (await running).reason
  await emulator.close()
  console.log(JSON.stringify(out))
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
