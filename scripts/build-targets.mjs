// npm run build:targets: builds the release addon for the targets of package.json
// `napi.targets` (or those named on the command line) into
// artifacts/bindings-<target>/feishu-transport.<platform>.node, the layout `napi artifacts`
// reads. The release workflow's build jobs call this same script, one target each, so a
// binary is made the same way here and on the runners.
//
//   node scripts/build-targets.mjs                  every target this host can build
//   node scripts/build-targets.mjs <target>...      only these; failing if one can't be
//   node scripts/build-targets.mjs --list           how each target would be built here
//
// How (per target, chosen by target and host):
// - Linux gnu: zig through cargo-zigbuild (`napi build -x`), against glibc 2.17 (the
//   `.2.17` suffix), so one binary loads on every glibc distribution Node 20 runs on
//   (Node 20's own floor is 2.28). x64 too: the host's gcc would link against this
//   machine's glibc (2.36, symbols up to 2.34).
// - Linux musl: zig, statically against musl.
// - macOS: natively on a macOS host. zig can link a plain macOS dylib without Apple's SDK,
//   but not this one: rustls-native-certs pulls in security-framework, which links the
//   Security and CoreFoundation frameworks, and zig ships no frameworks ("unable to find
//   system framework \"Security\"").
// - Windows msvc: natively on a Windows host. cargo-xwin, the cross route, downloads
//   Microsoft's CRT and SDK at build time, which only a runner can reach.
// - x86_64-pc-windows-gnu (not a published target): mingw-w64's gcc links it on Linux,
//   so a Windows binary can be run here under wine. napi-rs resolves Node's N-API from
//   the host process at load time, so no node.lib is needed.
//
// Environment: CARGO_BUILD_JOBS and CARGO_TARGET_DIR are passed on to cargo.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseTriple, readNapiConfig } from '@napi-rs/cli'
import { GLIBC_FLOOR } from './check-artifacts.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const napiConfig = await readNapiConfig(path.join(root, 'package.json'))
export const artifactsDir = path.join(root, 'artifacts')
/** Built here only for running a Windows binary under wine; never published. */
export const WINDOWS_GNU = 'x86_64-pc-windows-gnu'

/** How `target` is built on this host: `{ args, env }`, or `{ reason }` when it can't be. */
export function plan(target, host = process.platform) {
  const { platform, abi } = parseTriple(target)
  const base = ['build', '--platform', '--release', '--no-js', '--dts', 'native.d.ts']
  if (platform === 'linux' && (host === 'linux' || host === 'darwin')) {
    return { how: abi === 'gnu' ? `zig, glibc ${GLIBC_FLOOR}` : 'zig, musl libc linked dynamically', args: [...base, '--target', abi === 'gnu' ? `${target}.${GLIBC_FLOOR}` : target, '-x'] }
  }
  if (platform === 'darwin') {
    if (host === 'darwin') return { how: 'native (Xcode)', args: [...base, '--target', target] }
    return { reason: 'needs a macOS host: security-framework (from rustls-native-certs) links the Security and CoreFoundation frameworks, which zig does not ship' }
  }
  if (platform === 'win32' && abi === 'msvc') {
    if (host === 'win32') return { how: 'native (MSVC)', args: [...base, '--target', target] }
    return { reason: "needs a Windows host: cargo-xwin downloads Microsoft's CRT and SDK at build time (not reachable here)" }
  }
  if (target === WINDOWS_GNU && host === 'linux') {
    return { how: 'mingw-w64 gcc', args: [...base, '--target', target], env: { CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER: 'x86_64-w64-mingw32-gcc', LIBNODE_PATH: libnodeStubDir }, prepare: libnodeStub }
  }
  return { reason: `no route from a ${host} host` }
}

/**
 * napi-build links windows-gnu addons with `-lnode` and insists on finding a libnode.dll
 * (MSYS2's Node). napi-rs on Windows resolves every N-API function from the host process
 * at load time (libloading), so nothing is imported from it: an empty import archive
 * (libnode.dll.a, which ld takes before the DLL) beside an empty libnode.dll satisfies
 * both, and the binary imports only system DLLs (the check proves it).
 */
const libnodeStubDir = path.join(root, 'target', 'libnode-stub')
function libnodeStub() {
  const dir = libnodeStubDir
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'libnode.dll'), '')
  fs.writeFileSync(path.join(dir, 'libnode.dll.a'), '!<arch>\n')
  return dir
}

/** Where the artifact of `target` lands. */
export function artifactPath(target) {
  const { platformArchABI } = parseTriple(target)
  return path.join(artifactsDir, `bindings-${target}`, `${napiConfig.binaryName}.${platformArchABI}.node`)
}

/** The published targets, then the Windows gnu build used for the wine run. */
export const allTargets = [...napiConfig.targets.map((t) => t.triple), WINDOWS_GNU]

function build(target) {
  const p = plan(target)
  if (p.reason) return { target, ok: false, reason: p.reason }
  const outDir = path.dirname(artifactPath(target))
  fs.rmSync(outDir, { recursive: true, force: true })
  p.prepare?.()
  const napi = path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')
  const args = [napi, ...p.args, '--output-dir', outDir]
  console.log(`\n== ${target} (${p.how}): napi ${p.args.join(' ')}`)
  const started = Date.now()
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...p.env } })
  const seconds = Math.round((Date.now() - started) / 1000)
  // Only the binary is an artifact; the repository's native.d.ts comes from `npm run build`.
  fs.rmSync(path.join(outDir, 'native.d.ts'), { force: true })
  if (r.status !== 0) return { target, ok: false, reason: `napi build exited ${r.status} after ${seconds} s`, seconds }
  if (!fs.existsSync(artifactPath(target))) return { target, ok: false, reason: `no ${artifactPath(target)}`, seconds }
  return { target, ok: true, how: p.how, seconds }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const named = process.argv.slice(2).filter((a) => !a.startsWith('--'))
  if (process.argv.includes('--list')) {
    for (const t of allTargets) {
      const p = plan(t)
      console.log(`${t.padEnd(28)} ${p.reason ? `not here: ${p.reason}` : p.how}`)
    }
    process.exit(0)
  }
  for (const t of named) {
    if (!allTargets.includes(t)) {
      console.error(`unknown target ${t}; known: ${allTargets.join(', ')}`)
      process.exit(2)
    }
  }
  const results = []
  for (const t of named.length ? named : allTargets) {
    if (!named.length && plan(t).reason) {
      results.push({ target: t, ok: null, reason: plan(t).reason })
      continue
    }
    results.push(build(t))
  }
  console.log('\n== build:targets')
  for (const r of results) {
    const status = r.ok ? `built in ${r.seconds} s (${r.how}) -> ${path.relative(root, artifactPath(r.target))}` : r.ok === null ? `skipped: ${r.reason}` : `FAILED: ${r.reason}`
    console.log(`${r.target.padEnd(28)} ${status}`)
  }
  process.exit(results.some((r) => r.ok === false) ? 1 : 0)
}
