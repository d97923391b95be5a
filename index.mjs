// ESM entry of feishu-transport: the package is CommonJS (index.js). Its names are
// re-exported explicitly (test:package checks that none is missing), because Node's
// detection of CommonJS exports cannot see the ones index.js adds at run time (the
// emulator's).
import transport from './index.js'

export const { FeishuTransport, FeishuTransportError, FeishuEmulator, version } = transport
export default transport
