// The transport's side of the header-flood test: connects to the emulator the test runs
// (FLOOD_DOMAIN, FLOOD_APP_ID, FLOOD_APP_SECRET), so this process's peak RSS is the
// transport's alone. Prints one JSON line when connected, one when the flood frame has
// been dropped, then handles one more event and exits.
const { FeishuTransport } = require('../..')

const logs = []
let handled
const handledOne = new Promise((r) => { handled = r })
const t = new FeishuTransport({
  appId: process.env.FLOOD_APP_ID,
  appSecret: process.env.FLOOD_APP_SECRET,
  domain: process.env.FLOOD_DOMAIN,
  proxy: null,
  logLevel: 'warn',
  logger: (level, message) => logs.push(message),
  onEvent: () => handled(),
  onReady: () => {
    console.log(JSON.stringify({ ready: true }))
    watch()
  },
})
const running = t.start()
const before = process.resourceUsage().maxRSS

function watch() {
  const timer = setInterval(() => {
    const s = t.status()
    if (s.counters.droppedFrames < 1) return
    clearInterval(timer)
    console.log(JSON.stringify({
      droppedFrames: s.counters.droppedFrames,
      peakGrowthMb: (process.resourceUsage().maxRSS - before) / 1024,
      logLines: logs.filter((l) => l.includes('headers')).length,
    }))
  }, 10)
}

handledOne.then(async () => {
  await t.close()
  await running
})
