// A worker thread runs a transport; the main thread terminates it mid-start().
const { Worker } = require('node:worker_threads')
const { FeishuEmulator } = require('../..')
;(async () => {
  const emulator = await FeishuEmulator.start()
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads')
    const { FeishuTransport } = require(workerData.pkg)
    const t = new FeishuTransport({ appId: workerData.appId, appSecret: workerData.appSecret, domain: workerData.domain, logLevel: 'silent', proxy: null,
      onEvent: () => {}, onReady: () => parentPort.postMessage('ready') })
    t.start()
  `, { eval: true, workerData: { pkg: require.resolve('../..'), appId: emulator.appId, appSecret: emulator.appSecret, domain: emulator.domain } })
  await new Promise((resolve) => worker.once('message', resolve))
  const code = await worker.terminate()
  await emulator.close()
  console.log(`terminated ${code}`)
})()
