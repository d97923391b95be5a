// emulator.d.ts re-exports the emulator's part of the generated native.d.ts; this makes sure
// the public names say exactly what the generated ones say (see __test__/types/emulator-types.ts).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)

test('emulator.d.ts matches native.d.ts', () => {
  const tsc = require.resolve('typescript/bin/tsc')
  const file = fileURLToPath(new URL('./types/emulator-types.ts', import.meta.url))
  const r = spawnSync(
    process.execPath,
    [tsc, '--noEmit', '--strict', '--target', 'es2022', '--module', 'commonjs', '--types', 'node', file],
    { encoding: 'utf8' },
  )
  assert.equal(r.status, 0, `tsc failed:\n${r.stdout}${r.stderr}`)
})
