// Connects a transport to an emulator, handles one event, and prints how many tokio
// worker threads the process has then (Linux: /proc/self/task/*/comm; tokio names them
// `tokio-rt-worker`, `tokio-runtime-worker` before 1.50, cut to 15 characters). Nothing
// here resolves a host name, so no blocking-pool thread (named alike) is counted.
const fs = require('node:fs')
const { FeishuTransport, FeishuEmulator } = require('../..')

function workers() {
  return fs.readdirSync('/proc/self/task')
    .map((tid) => { try { return fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() } catch { return '' } })
    .filter((name) => name === 'tokio-rt-worker' || name === 'tokio-runtime-w').length
}

;(async () => {
  const emulator = await FeishuEmulator.start()
  let handled
  const got = new Promise((resolve) => { handled = resolve })
  const t = new FeishuTransport({
    appId: emulator.appId, appSecret: emulator.appSecret, domain: emulator.domain, logLevel: 'silent', proxy: null,
    onEvent: () => handled(),
  })
  const running = t.start()
  await emulator.waitForConnections(1)
  emulator.pushEvent({ schema: '2.0', header: { event_id: 'rt-1', event_type: 'im.message.receive_v1' }, event: {} })
  await got
  console.log(JSON.stringify({ workers: workers() }))
  await t.close({ force: true })
  await running
  await emulator.close()
})()
