// ESM entry of feishu-transport: the package is CommonJS (index.js); this re-exports its
// names explicitly, because Node's CJS named-export detection cannot see the exports that
// index.js adds at run time (the emulator's).
import transport from './index.js'

export const { FeishuTransport, FeishuTransportError, FeishuEmulator, version } = transport
export default transport
