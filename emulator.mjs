// ESM entry of feishu-transport/emulator: emulator.js is CommonJS. Its names are
// re-exported explicitly (test:package checks that none is missing).
import emulator from './emulator.js'

export const { FeishuEmulator } = emulator
export default emulator
