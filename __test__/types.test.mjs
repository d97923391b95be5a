// index.d.ts cannot drift from the API: a usage file must type-check against it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

test('the documented API type-checks against index.d.ts (tsc --noEmit)', () => {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, '__test__', 'types', 'tsconfig.json')], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stdout + r.stderr)
})

test("OpenClaw's code with examples/openclaw/compat.patch applied type-checks against compat.d.ts and the SDK's types (strict, NodeNext)", () => {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, '__test__', 'types', 'tsconfig.openclaw.json')], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stdout + r.stderr)
})
