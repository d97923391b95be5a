// Constructs a transport and never starts it: the process must exit at once.
const { FeishuTransport } = require('../..')
globalThis.keep = new FeishuTransport({ appId: 'cli_a1b2c3d4e5f60718', appSecret: 's', domain: 'http://127.0.0.1:9', onEvent: () => {} })
console.log('constructed')
