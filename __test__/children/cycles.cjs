// 500 start()/close() cycles in one process; prints fd and thread counts before and after.
const fs = require('node:fs')
const { FeishuTransport, FeishuEmulator } = require('../..')
const fds = () => fs.readdirSync('/proc/self/fd').length
const threads = () => Number(/Threads:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1])
const rssMb = () => process.memoryUsage().rss / 1048576
;(async () => {
  const emulator = await FeishuEmulator.start()
  const cycles = Number(process.argv[2] || 500)
  const t = new FeishuTransport({ appId: emulator.appId, appSecret: emulator.appSecret, domain: emulator.domain, logLevel: 'silent', proxy: null, onEvent: () => {} })
  const one = async () => {
    let ready
    const connected = new Promise((r) => { ready = r })
    const poll = setInterval(() => t.status().connected && ready(), 1)
    const running = t.start()
    await connected
    clearInterval(poll)
    await t.close()
    await running
  }
  for (let i = 0; i < 20; i++) await one() // warm-up: runtime threads, allocator arenas
  global.gc && global.gc()
  const before = { fds: fds(), threads: threads(), rss: rssMb() }
  for (let i = 0; i < cycles; i++) await one()
  global.gc && global.gc()
  const after = { fds: fds(), threads: threads(), rss: rssMb() }
  await emulator.close()
  console.log(JSON.stringify({ cycles, before, after }))
})()
