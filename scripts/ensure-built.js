// Builds the native addon (release) before the tests, so that a fresh clone needs only
// `npm install && npm test`. Cargo's own change detection makes a no-op build take a second.
'use strict'
const { spawnSync } = require('node:child_process')
const path = require('node:path')

const root = path.join(__dirname, '..')
const napi = path.join(root, 'node_modules', '.bin', 'napi')
const args = ['build', '--platform', '--release', '--js', 'native.js', '--dts', 'native.d.ts']
const r = spawnSync(napi, args, { cwd: root, stdio: 'inherit' })
if (r.status !== 0) {
  console.error(`native build failed (napi ${args.join(' ')}), exit ${r.status}`)
  process.exit(r.status ?? 1)
}
