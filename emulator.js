// The emulator's public entry: a local Feishu long-connection server for tests, demos
// and benchmarks. The class itself is native (src/binding/emulator.rs); this file only
// re-exports it and adds `Symbol.asyncDispose`, so `await using emu = await
// FeishuEmulator.start()` closes it at the end of the block.
'use strict'

const { FeishuEmulator } = require('./native.js')

if (typeof Symbol.asyncDispose === 'symbol' && !FeishuEmulator.prototype[Symbol.asyncDispose]) {
  Object.defineProperty(FeishuEmulator.prototype, Symbol.asyncDispose, {
    value: function asyncDispose() {
      return this.close()
    },
    configurable: true,
    writable: true,
  })
}

module.exports.FeishuEmulator = FeishuEmulator
