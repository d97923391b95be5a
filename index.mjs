// ESM entry of feishu-transport: the package is CommonJS (index.js). Its names are
// re-exported explicitly, so `import { FeishuTransport }` does not depend on Node's
// detection of CommonJS exports (test:package checks that none is missing).
import transport from './index.js'

export const { FeishuTransport, FeishuTransportError, FeishuEmulator, version } = transport
export default transport
