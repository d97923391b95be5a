// ESM entry of feishu-transport/compat, the drop-in WSClient: compat.js is CommonJS.
// WSClient is re-exported by name so `import { WSClient }` works however compat.js builds
// its exports; `export *` adds whatever else Node's CJS export detection finds there.
import compat from './compat.js'

export * from './compat.js'
export const { WSClient } = compat
export default compat
