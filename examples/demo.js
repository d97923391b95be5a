'use strict'
// `npm run demo`: receive Feishu events and print one readable line each.
//
// With FEISHU_APP_ID and FEISHU_APP_SECRET set it connects to the real Feishu (or Lark
// with FEISHU_DOMAIN=lark) and runs until Ctrl-C. Without them it starts the built-in
// emulator and plays a short scene: a text message, a card action answered with a toast,
// a dropped connection and the automatic reconnect; then it exits 0.

const { FeishuTransport, FeishuEmulator } = require('..')

const tty = process.stdout.isTTY
const paint = (code, s) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s)
const dim = (s) => paint('2', s)
const bold = (s) => paint('1', s)
const green = (s) => paint('32', s)
const yellow = (s) => paint('33', s)
const red = (s) => paint('31', s)

const time = () => new Date().toTimeString().slice(0, 8)
const clip = (s, n = 70) => (s.length > n ? `${s.slice(0, n - 1)}…` : s)

/** One line that says what happened, for the event types a bot meets first. */
function describe(e) {
  const p = e.payload
  const ev = p.event || {}
  switch (e.eventType) {
    case 'im.message.receive_v1': {
      const m = ev.message || {}
      let text = m.message_type
      try {
        const c = JSON.parse(m.content || '{}')
        if (m.message_type === 'text') text = `"${c.text}"`
        else if (m.message_type === 'post') text = `post "${c.title || ''}"`
        else if (m.message_type === 'image') text = `image ${c.image_key}`
      } catch {}
      const who = ev.sender && ev.sender.sender_id ? ev.sender.sender_id.open_id : '?'
      return `message from ${who} in ${m.chat_type} ${m.chat_id}: ${clip(text)}`
    }
    case 'card.action.trigger': {
      const a = ev.action || {}
      return `card action ${a.tag}${a.name ? ` "${a.name}"` : ''} by ${ev.operator && ev.operator.open_id} value ${clip(JSON.stringify(a.value || {}), 50)}`
    }
    case 'im.message.reaction.created_v1':
      return `reaction ${ev.reaction_type && ev.reaction_type.emoji_type} on ${ev.message_id}`
    case 'message':
      return `v1 message from ${ev.open_id}: "${clip(ev.text || '')}"`
    default:
      return clip(JSON.stringify(ev), 80)
  }
}

function statusLine(s) {
  const state = s.connected ? green('● connected') : s.state === 'failed' ? red(`● ${s.state}`) : yellow(`● ${s.state}`)
  return `${state}  events ${s.counters.events}  acks ${s.counters.acks}  reconnects ${s.counters.reconnects}${s.connectionId ? dim(`  conn ${s.connectionId}`) : ''}`
}

function makeTransport(options, { onCardAction } = {}) {
  let transport
  const print = (line) => console.log(`${dim(time())} ${line}`)
  transport = new FeishuTransport({
    ...options,
    logLevel: process.env.FEISHU_LOG_LEVEL || 'warn',
    logger: (level, message) => print(`${level === 'error' ? red(level) : yellow(level)} ${message}`),
    onEvent: (e) => {
      print(`${bold(e.eventType || '?')}  ${describe(e)}`)
      if (e.eventType === 'card.action.trigger' && onCardAction) return onCardAction(e)
      return undefined
    },
    onReady: () => print(statusLine(transport.status())),
    onReconnecting: ({ attempt, delayMs, error }) => print(yellow(`reconnecting in ${delayMs} ms (attempt ${attempt}) after ${error ? error.code : 'a drop'}`)),
    onReconnected: () => print(statusLine(transport.status())),
  })
  return { transport, print }
}

async function live() {
  const domain = process.env.FEISHU_DOMAIN || 'feishu'
  const { transport, print } = makeTransport({
    appId: process.env.FEISHU_APP_ID,
    appSecret: process.env.FEISHU_APP_SECRET,
    domain,
  })
  print(`connecting to ${domain} as ${process.env.FEISHU_APP_ID} (Ctrl-C to stop)`)
  const timer = setInterval(() => print(statusLine(transport.status())), 30_000)
  timer.unref()
  const ac = new AbortController()
  process.once('SIGINT', () => ac.abort())
  process.once('SIGTERM', () => ac.abort())
  try {
    const r = await transport.start({ signal: ac.signal })
    print(`stopped (${r.reason}). ${statusLine(transport.status())}`)
  } catch (e) {
    print(red(`gave up: ${e.code}: ${e.message}`))
    process.exitCode = 1
  }
}

async function offline() {
  const emulator = await FeishuEmulator.start()
  const samples = FeishuEmulator.samples()
  const toast = { toast: { type: 'success', content: 'Approved', i18n: { zh_cn: '已批准', en_us: 'Approved' } } }
  const { transport, print } = makeTransport(
    {
      appId: emulator.appId,
      appSecret: emulator.appSecret,
      domain: emulator.domain,
      // The emulator is on loopback: never through the machine's proxy variables.
      proxy: null,
      reconnect: { initialDelayMs: 300, jitter: 0.2 },
    },
    { onCardAction: () => toast },
  )
  print(dim(`no FEISHU_APP_ID/FEISHU_APP_SECRET: using the built-in emulator at ${emulator.domain}`))
  let ready
  const readyOnce = new Promise((r) => { ready = r })
  const running = transport.start()
  const poll = setInterval(() => transport.status().connected && ready(), 10)
  await readyOnce
  clearInterval(poll)

  const push = async (name, label) => {
    const id = emulator.pushEvent(samples[name])
    const ack = await emulator.waitForAck(id, { timeoutMs: 5000 })
    const data = ack.data ? ` data ${clip(ack.data, 60)}` : ''
    print(dim(`  ↳ ${label}: ack ${ack.code} in ${(ack.latencyUs / 1000).toFixed(2)} ms${data}`))
  }
  await push('message-receive-text', 'text message')
  await push('card-action-trigger', 'card action answered with a toast')
  await push('reaction-created', 'reaction')

  print(yellow('the emulator drops the connection…'))
  emulator.dropConnections()
  await new Promise((resolve) => {
    const t = setInterval(() => {
      if (transport.status().counters.reconnects >= 1 && transport.status().connected) {
        clearInterval(t)
        resolve()
      }
    }, 10)
  })
  await push('message-receive-post', 'rich-text message after the reconnect')
  await push('v1-message-text', 'legacy v1 event')

  await transport.close()
  const r = await running
  print(`stopped (${r.reason}). ${statusLine(transport.status())}`)
  await emulator.close()
}

const main = process.env.FEISHU_APP_ID && process.env.FEISHU_APP_SECRET ? live : offline
main().catch((e) => {
  console.error(red(`demo failed: ${e && e.stack ? e.stack : e}`))
  process.exit(1)
})
