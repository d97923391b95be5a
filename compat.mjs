// ESM entry of feishu-transport/compat: compat.js is CommonJS. Its names are re-exported
// explicitly (test:package checks that none is missing), so `import { WSClient }` does not
// depend on Node's detection of CommonJS exports.
import compat from './compat.js'

export const { WSClient, Domain, LoggerLevel } = compat
export default compat
