// OpenClaw's monitor in a process of its own ('compat': OpenClaw's loop over the compat
// WSClient; 'native': the example monitor). Prints "ready" once connected, aborts on a
// line on stdin, prints "returned" when monitorWebSocket returns, and must then exit by
// itself: nothing may keep the event loop alive.
import https from 'node:https'
import Lark from '@larksuiteoapi/node-sdk'
import { monitorWebSocket, durableIngress } from '../support/openclaw-model.mjs'
import { clearProxyEnv, loadExample } from '../support/openclaw-harness.mjs'

clearProxyEnv()
const kind = process.argv[2]
const ac = new AbortController()
const dispatcher = new Lark.EventDispatcher({ loggerLevel: Lark.LoggerLevel.error }).register({ 'im.message.receive_v1': async () => {} })
const ingress = durableIngress(dispatcher, async () => {})
let ready = false
const params = {
  account: { accountId: 'acct', appId: process.env.OPENCLAW_TEST_APP_ID, appSecret: process.env.OPENCLAW_TEST_APP_SECRET, domain: process.env.OPENCLAW_TEST_DOMAIN },
  accountId: 'acct',
  runtime: { log: () => {}, error: () => {}, exit: () => {} },
  abortSignal: ac.signal,
  eventDispatcher: ingress.eventDispatcher,
  setSocketTerminator: ingress.setSocketTerminator,
  statusSink: (p) => {
    if (p.lifecycle === 'ready' && !ready) {
      ready = true
      process.stdout.write('ready\n')
    }
  },
}
for (const level of ['info', 'debug', 'warn']) console[level] = () => {}
process.stdin.once('data', () => ac.abort())
const running = kind === 'compat'
  ? monitorWebSocket({ ...params, agent: new https.Agent({ keepAlive: false }) })
  : loadExample().monitor.monitorWebSocket(params)
await running
process.stdout.write('returned\n')
process.stdin.pause()
