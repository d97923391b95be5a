// npm run test:package: proves the packages work as a user gets them. It builds the
// release addon, packs the root package and this host's platform package, lets the real
// `napi pre-publish` write the root's optionalDependencies (as the release workflow
// does), installs the root tarball into an empty project outside the repository — npm
// fetches the platform package through that optional dependency — and there loads it
// with require and import, type-checks a file against the installed types, runs a
// transport against the emulator, and inspects what was packed.
//
//   node scripts/test-package.mjs              build first (what .ci/run does)
//   node scripts/test-package.mjs --prebuilt   use the .node already in the repo root
//                                              (the release workflow's test jobs)
//   FEISHU_TRANSPORT_KEEP_TMP=1                keep the temporary directory
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseTriple, readNapiConfig } from '@napi-rs/cli'

const root = fileURLToPath(new URL('..', import.meta.url))
const prebuilt = process.argv.includes('--prebuilt')
const isWindows = process.platform === 'win32'
const rootPkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
const napiConfig = await readNapiConfig(path.join(root, 'package.json'))
const { binaryName } = napiConfig

/** This host's `platformArchABI`, named the way napi names its artifacts. */
function hostPlatformArchABI() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const musl = !process.report.getReport().header.glibcVersionRuntime
    return `linux-${arch}-${musl ? 'musl' : 'gnu'}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

const abi = hostPlatformArchABI()
const hostTarget = napiConfig.targets.find((t) => t.platformArchABI === abi)
const platformPkgName = `${rootPkg.name}-${abi}`
const addonFile = `${binaryName}.${abi}.node`

// Children get an environment without npm's own variables: under `npm run`, settings
// such as npm_config_local_prefix point at the repository and would leak into the
// temporary project's npm. NODE_PATH and NODE_OPTIONS could resolve modules from
// elsewhere, so they go too.
const childEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) && !['NODE_PATH', 'NODE_OPTIONS', 'INIT_CWD'].includes(k)),
)

function run(cmd, args, { cwd, timeout = 10 * 60_000, inherit = false } = {}) {
  // npm is a .cmd shim on Windows, which only a shell can start; the shell then needs
  // paths with spaces quoted.
  const shell = isWindows && cmd === 'npm'
  if (shell) args = args.map((a) => (/\s/.test(a) ? `"${a}"` : a))
  const r = spawnSync(cmd, args, {
    cwd,
    env: childEnv,
    encoding: 'utf8',
    timeout,
    stdio: inherit ? 'inherit' : 'pipe',
    shell,
  })
  if (r.error) throw r.error
  return r
}

function runOk(cmd, args, opts) {
  const r = run(cmd, args, opts)
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} exited ${r.status} (signal ${r.signal})\n${r.stdout ?? ''}${r.stderr ?? ''}`)
  return r
}

function packJson(cwd, destination) {
  const r = runOk('npm', ['pack', '--json', '--pack-destination', destination], { cwd })
  const [info] = JSON.parse(r.stdout.slice(r.stdout.indexOf('[')))
  return info
}

const kB = (n) => `${(n / 1024).toFixed(1)} KiB`

let tmp
let app
let rootPack
let platformPack
let installedPkg
let installedAddon

before(() => {
  assert.ok(hostTarget, `this host (${abi}) is not one of napi.targets`)
  if (prebuilt) {
    assert.ok(fs.existsSync(path.join(root, addonFile)), `--prebuilt: ${addonFile} is not in ${root}`)
  } else {
    const started = Date.now()
    runOk('npm', ['run', 'build'], { cwd: root, inherit: true, timeout: 30 * 60_000 })
    console.log(`# build: npm run build took ${((Date.now() - started) / 1000).toFixed(0)} s`)
  }

  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'feishu-transport-package-')))
  const packs = path.join(tmp, 'packs')
  const stage = path.join(tmp, 'stage')
  app = path.join(tmp, 'app')
  for (const d of [packs, path.join(packs, 'repo'), stage, app]) fs.mkdirSync(d, { recursive: true })

  // The root package as `npm pack` sees it in the repository, copied file by file into a
  // staging directory where pre-publish may rewrite package.json.
  const repoPack = packJson(root, path.join(packs, 'repo'))
  for (const { path: rel } of repoPack.files) {
    fs.mkdirSync(path.dirname(path.join(stage, rel)), { recursive: true })
    fs.copyFileSync(path.join(root, rel), path.join(stage, rel))
  }

  // This host's platform package, with the binary moved in as `napi artifacts` does.
  const platformDir = path.join(stage, 'npm', abi)
  fs.mkdirSync(platformDir, { recursive: true })
  for (const f of fs.readdirSync(path.join(root, 'npm', abi))) {
    fs.copyFileSync(path.join(root, 'npm', abi, f), path.join(platformDir, f))
  }
  fs.copyFileSync(path.join(root, addonFile), path.join(platformDir, addonFile))

  // The release workflow's `napi pre-publish -t npm`, limited to this host's target (the
  // only binary there is) and without publishing: it validates the platform package and
  // writes the root's optionalDependencies.
  const hostConfig = path.join(tmp, 'napi-host.json')
  fs.writeFileSync(hostConfig, JSON.stringify({ ...rootPkg.napi, targets: [hostTarget.triple] }))
  const napiCli = path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')
  runOk(process.execPath, [napiCli, 'pre-publish', '-t', 'npm', '--skip-optional-publish', '--no-gh-release', '-c', hostConfig], { cwd: stage })

  rootPack = packJson(stage, packs)
  rootPack.repoFiles = repoPack.files.map((f) => f.path).sort()
  platformPack = packJson(platformDir, packs)

  // An empty project that depends on the root tarball, plus @types/node as any TypeScript
  // project on Node has it (emulator.d.ts uses Buffer). The override points the optional
  // dependency at the local platform tarball, which stands in for the registry. npm takes
  // @types/node from its cache, filled by the repository's `npm ci`, and asks the
  // registry only when it is not there.
  const typesNode = JSON.parse(fs.readFileSync(path.join(root, 'node_modules', '@types', 'node', 'package.json'), 'utf8')).version
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({
    name: 'package-test-app',
    version: '1.0.0',
    private: true,
    dependencies: { [rootPkg.name]: `file:../packs/${rootPack.filename}`, '@types/node': typesNode },
    overrides: { [platformPkgName]: `file:../packs/${platformPack.filename}` },
  }, null, 2))
  runOk('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: app })
  installedPkg = path.join(app, 'node_modules', rootPkg.name)
  installedAddon = path.join(app, 'node_modules', platformPkgName, addonFile)
})

after(() => {
  if (tmp && !process.env.FEISHU_TRANSPORT_KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true })
  else if (tmp) console.log(`# kept ${tmp}`)
})

function node(file, source, timeout = 60_000) {
  fs.writeFileSync(path.join(app, file), source)
  return run(process.execPath, [file], { cwd: app, timeout })
}

function nodeOk(file, source, timeout) {
  const r = node(file, source, timeout)
  assert.equal(r.status, 0, `node ${file} exited ${r.status} (signal ${r.signal})\n${r.stdout}${r.stderr}`)
  return r
}

const hasInstalled = (file) => fs.existsSync(path.join(installedPkg, file))

test('every napi target has a committed platform package whose name the loader requires', () => {
  const loader = fs.readFileSync(path.join(root, 'native.js'), 'utf8')
  assert.equal(napiConfig.targets.length, 8)
  for (const target of napiConfig.targets) {
    const dir = path.join(root, 'npm', target.platformArchABI)
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'))
    const name = `${rootPkg.name}-${target.platformArchABI}`
    const file = `${binaryName}.${target.platformArchABI}.node`
    assert.equal(pkg.name, name)
    assert.equal(pkg.version, rootPkg.version, `${name}: run npm version (napi version keeps them in step)`)
    assert.equal(pkg.main, file)
    assert.deepEqual(pkg.files, [file])
    assert.deepEqual(pkg.os, [target.platform])
    assert.deepEqual(pkg.cpu, [target.arch])
    if (target.platform === 'linux') assert.deepEqual(pkg.libc, [target.abi === 'musl' ? 'musl' : 'glibc'])
    assert.deepEqual(pkg.engines, rootPkg.engines)
    assert.equal(pkg.license, rootPkg.license)
    assert.deepEqual(pkg.repository, rootPkg.repository)
    assert.ok(loader.includes(`require('${name}')`), `native.js never requires ${name}`)
    assert.ok(loader.includes(`require('./${file}')`), `native.js never requires ./${file}`)
  }
})

test('the root manifest: no build on pack or install, types, exports, engines', () => {
  for (const s of ['prepare', 'prepack', 'postpack', 'preinstall', 'install', 'postinstall', 'prepublish']) {
    assert.equal(rootPkg.scripts[s], undefined, `scripts.${s} would run on pack or install`)
  }
  assert.equal(rootPkg.types, 'index.d.ts')
  assert.deepEqual(rootPkg.exports['.'], { types: './index.d.ts', import: './index.mjs', require: './index.js' })
  assert.deepEqual(rootPkg.exports['./compat'], { types: './compat.d.ts', import: './compat.mjs', require: './compat.js' })
  assert.deepEqual(rootPkg.exports['./emulator'], { types: './emulator.d.ts', import: './emulator.mjs', require: './emulator.js' })
  assert.equal(rootPkg.optionalDependencies, undefined, 'optionalDependencies are written by napi pre-publish at release')
  const installed = JSON.parse(fs.readFileSync(path.join(installedPkg, 'package.json'), 'utf8'))
  assert.deepEqual(installed.optionalDependencies, { [platformPkgName]: rootPkg.version })
})

test('the committed loader is the one the build generates', (t) => {
  if (prebuilt) return t.skip('--prebuilt: the loader was not regenerated')
  const r = run('git', ['status', '--porcelain', '--', 'native.js', 'native.d.ts'], { cwd: root })
  if (r.status !== 0) return t.skip('not a git checkout')
  assert.equal(r.stdout.trim(), '', 'the build changed native.js/native.d.ts: commit them, the published package ships the committed loader')
})

test('the root tarball holds the JS entries and types only: no tests, Rust, target/ or binaries', () => {
  const files = rootPack.files.map((f) => f.path).sort()
  assert.deepEqual(files, rootPack.repoFiles, 'pre-publish changed which files are packed')
  const forbidden = [
    /^src\//, /^target\//, /^__test__\//, /^tests\//, /^bench\//, /^examples\//, /^fixtures\//,
    /^scripts\//, /^npm\//, /^\.ci\//, /^\.github\//, /\.rs$/, /^Cargo\./, /^build\.rs$/, /\.node$/,
    /\.tgz$/, /(^|\/)node_modules\//, /\.test\.m?js$/, /^deny\.toml$/,
  ]
  for (const f of files) {
    for (const re of forbidden) assert.ok(!re.test(f), `${f} must not be packed (${re})`)
  }
  for (const f of ['package.json', 'README.md', 'index.js', 'index.mjs', 'index.d.ts', 'native.js', 'native.d.ts']) {
    assert.ok(files.includes(f), `${f} is missing from the tarball`)
  }
  for (const f of ['emulator.js', 'emulator.d.ts', 'emulator.mjs', 'compat.js', 'compat.d.ts', 'compat.mjs']) {
    if (fs.existsSync(path.join(root, f))) assert.ok(files.includes(f), `${f} exists but is not packed`)
  }
  console.log(`# root tarball files: ${files.join(' ')}`)
})

test('the platform tarball holds the binary, its manifest and README only', () => {
  const files = platformPack.files.map((f) => f.path).sort()
  assert.deepEqual(files, [addonFile, 'README.md', 'package.json'].sort())
})

test('sizes', () => {
  const addonSize = fs.statSync(installedAddon).size
  console.log(`# size: ${rootPack.filename} ${kB(rootPack.size)} packed, ${kB(rootPack.unpackedSize)} unpacked, ${rootPack.entryCount} files`)
  console.log(`# size: ${platformPack.filename} ${kB(platformPack.size)} packed, ${kB(platformPack.unpackedSize)} unpacked`)
  console.log(`# size: ${addonFile} ${kB(addonSize)} (${addonSize} bytes)`)
  assert.ok(addonSize > 0)
})

test('the binary links no OpenSSL: only the C library and friends (ldd)', (t) => {
  if (process.platform !== 'linux') return t.skip(`ldd is Linux only (${process.platform})`)
  const r = runOk('ldd', [installedAddon])
  console.log(r.stdout.trim().split('\n').map((l) => `# ldd: ${l.trim()}`).join('\n'))
  const allowed = /^(linux-vdso\.so|linux-gate\.so|ld-linux[\w.-]*\.so|ld-musl[\w.-]*\.so|libc\.so|libc\.musl[\w.-]*\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libgcc_s\.so|\/lib[\w/.-]*ld-linux[\w.-]*\.so|\/lib\/ld-musl[\w.-]*\.so)/
  for (const line of r.stdout.trim().split('\n')) {
    const lib = line.trim().split(/\s+/)[0]
    assert.ok(!/ssl|crypto/i.test(line), `links OpenSSL: ${line.trim()}`)
    assert.match(lib, allowed, `unexpected dynamic dependency: ${line.trim()}`)
  }
})

test('require("feishu-transport") loads the binary from the platform package', () => {
  const r = nodeOk('check-require.cjs', `
    const assert = require('node:assert/strict')
    const fs = require('node:fs')
    const path = require('node:path')
    const here = fs.realpathSync(__dirname)
    const ft = require(${JSON.stringify(rootPkg.name)})
    const pkg = require(${JSON.stringify(`${rootPkg.name}/package.json`)})
    assert.equal(fs.realpathSync(require.resolve(${JSON.stringify(rootPkg.name)})), path.join(here, 'node_modules', ${JSON.stringify(rootPkg.name)}, 'index.js'))
    assert.equal(typeof ft.FeishuTransport, 'function')
    assert.equal(typeof ft.FeishuTransportError, 'function')
    assert.equal(ft.version, pkg.version)
    const addons = Object.keys(require.cache).filter((f) => f.endsWith('.node')).map((f) => fs.realpathSync(f))
    assert.deepEqual(addons, [path.join(here, 'node_modules', ${JSON.stringify(platformPkgName)}, ${JSON.stringify(addonFile)})])
    assert.throws(() => require(${JSON.stringify(`${rootPkg.name}/native.js`)}), { code: 'ERR_PACKAGE_PATH_NOT_EXPORTED' })
    console.log('loaded ' + addons[0])
  `)
  console.log(`# require: ${r.stdout.trim()}`)
})

test('import { FeishuTransport } from "feishu-transport" works and is the CommonJS class', () => {
  nodeOk('check-import.mjs', `
    import assert from 'node:assert/strict'
    import { createRequire } from 'node:module'
    import ft, { FeishuTransport, FeishuTransportError, version } from ${JSON.stringify(rootPkg.name)}
    import * as ns from ${JSON.stringify(rootPkg.name)}
    const require = createRequire(import.meta.url)
    const cjs = require(${JSON.stringify(rootPkg.name)})
    assert.ok(import.meta.resolve(${JSON.stringify(rootPkg.name)}).endsWith('/node_modules/${rootPkg.name}/index.mjs'))
    assert.equal(typeof FeishuTransport, 'function')
    assert.equal(FeishuTransport, cjs.FeishuTransport, 'one class, not a second copy')
    assert.equal(FeishuTransportError, cjs.FeishuTransportError)
    assert.equal(ft, cjs)
    assert.equal(version, cjs.version)
    for (const name of Object.keys(cjs)) assert.equal(ns[name], cjs[name], 'index.mjs does not re-export ' + name)
  `)
})

test('feishu-transport/compat loads with require and import', (t) => {
  if (!hasInstalled('compat.js')) {
    console.log('# SKIP compat: compat.js is not in the package yet, feishu-transport/compat not checked')
    return t.skip('compat.js is not in the package yet')
  }
  nodeOk('check-compat.mjs', `
    import assert from 'node:assert/strict'
    import { createRequire } from 'node:module'
    import { WSClient } from ${JSON.stringify(`${rootPkg.name}/compat`)}
    import * as ns from ${JSON.stringify(`${rootPkg.name}/compat`)}
    const require = createRequire(import.meta.url)
    const compat = require(${JSON.stringify(`${rootPkg.name}/compat`)})
    assert.equal(typeof compat.WSClient, 'function')
    assert.equal(WSClient, compat.WSClient)
    assert.equal(ns.default, compat)
    for (const name of Object.keys(compat)) assert.equal(ns[name], compat[name], 'compat.mjs does not re-export ' + name)
  `)
})

test('feishu-transport/emulator loads with require and import, the same class as the main entry', (t) => {
  if (!hasInstalled('emulator.js')) {
    console.log('# SKIP emulator entry: emulator.js is not in the package yet')
    return t.skip('emulator.js is not in the package yet')
  }
  nodeOk('check-emulator.mjs', `
    import assert from 'node:assert/strict'
    import { createRequire } from 'node:module'
    import { FeishuEmulator } from ${JSON.stringify(`${rootPkg.name}/emulator`)}
    import * as ns from ${JSON.stringify(`${rootPkg.name}/emulator`)}
    import { FeishuEmulator as fromMain } from ${JSON.stringify(rootPkg.name)}
    const require = createRequire(import.meta.url)
    const emulator = require(${JSON.stringify(`${rootPkg.name}/emulator`)})
    assert.equal(typeof emulator.FeishuEmulator, 'function')
    assert.equal(FeishuEmulator, emulator.FeishuEmulator)
    assert.equal(FeishuEmulator, fromMain)
    assert.equal(ns.default, emulator)
    for (const name of Object.keys(emulator)) assert.equal(ns[name], emulator[name], 'emulator.mjs does not re-export ' + name)
  `)
})

test('a TypeScript file using the API type-checks against the installed types', () => {
  const emulator = hasInstalled('emulator.d.ts')
  const compat = hasInstalled('compat.d.ts')
  fs.writeFileSync(path.join(app, 'usage.mts'), `
    import { FeishuTransport, FeishuTransportError, version${emulator ? ', FeishuEmulator' : ''} } from '${rootPkg.name}'
    import type { FeishuEvent, FeishuTransportOptions, TransportStatus } from '${rootPkg.name}'
    ${emulator ? `import { FeishuEmulator as EmulatorEntry } from '${rootPkg.name}/emulator'` : ''}
    ${compat ? `import { WSClient, Domain, LoggerLevel } from '${rootPkg.name}/compat'
    const client = new WSClient({ appId: 'cli_a1b2c3d4e5f60718', appSecret: 'secret', domain: Domain.Lark, loggerLevel: LoggerLevel.warn })
    void client.start({ eventDispatcher: { invoke: async (data: unknown) => data } })
    client.close({ force: true })` : ''}
    const options: FeishuTransportOptions = {
      appId: 'cli_a1b2c3d4e5f60718',
      appSecret: 'secret',
      domain: 'lark',
      async onEvent(event: FeishuEvent) {
        return event.eventType === 'card.action.trigger' ? { toast: { type: 'info', content: event.messageId } } : undefined
      },
      onError: (e: FeishuTransportError) => { if (e.terminal) void e.code },
      reconnect: { initialDelayMs: 100, maxAttempts: 3 },
    }
    const transport = new FeishuTransport(options)
    const status: TransportStatus = transport.status()
    const result: Promise<{ reason: 'closed' | 'aborted' }> = transport.start({ signal: new AbortController().signal })
    void status; void result; void transport.close({ force: true })
    const v: string = version
    void v
    ${emulator ? `const em: FeishuEmulator = await FeishuEmulator.start()
    const id: string = em.pushEvent({ schema: '2.0', header: { event_type: 'im.message.receive_v1' }, event: {} })
    await em.waitForAck(id, { timeoutMs: 1000 })
    await em.close()
    const Same: typeof FeishuEmulator = EmulatorEntry
    void Same` : ''}
  `)
  fs.writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      strict: true,
      noEmit: true,
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      lib: ['ES2022', 'DOM'],
      types: [],
      skipLibCheck: false,
    },
    files: ['usage.mts'],
  }, null, 2))
  // The repository's tsc, by absolute path: module resolution starts from usage.mts, so
  // the types come from the temporary project's node_modules and nowhere else.
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  const r = run(process.execPath, [tsc, '-p', path.join(app, 'tsconfig.json'), '--listFiles'], { cwd: app })
  assert.equal(r.status, 0, r.stdout + r.stderr)
  const listed = r.stdout.trim().split('\n').map((f) => path.resolve(f.trim()))
  const typescriptLib = path.join(root, 'node_modules', 'typescript', 'lib')
  for (const f of listed) {
    assert.ok(f.startsWith(app + path.sep) || f.startsWith(typescriptLib + path.sep), `type-check read ${f}, outside the temporary project`)
  }
  assert.ok(listed.includes(path.join(installedPkg, 'index.d.ts')), 'index.d.ts was not read from the installed package')
})

test('a transport connects to the emulator, receives an event, and the process exits by itself', (t) => {
  if (!hasInstalled('emulator.js')) {
    console.log('# SKIP emulator: emulator.js is not in the package yet, the end-to-end run is not checked')
    return t.skip('emulator.js is not in the package yet')
  }
  const payload = JSON.parse(fs.readFileSync(path.join(root, 'fixtures', 'events', 'message-receive-text.json'), 'utf8'))
  // No process.exit(): the run must leave nothing that keeps Node alive.
  const r = nodeOk('e2e.mjs', `
    import assert from 'node:assert/strict'
    import { FeishuTransport, FeishuEmulator } from ${JSON.stringify(rootPkg.name)}
    const payload = ${JSON.stringify(payload)}
    const em = await FeishuEmulator.start()
    let onReady, onEvent
    const ready = new Promise((resolve) => { onReady = resolve })
    const received = new Promise((resolve) => { onEvent = resolve })
    const transport = new FeishuTransport({
      appId: em.appId, appSecret: em.appSecret, domain: em.domain, logLevel: 'warn',
      onReady, onEvent: (event) => { onEvent(event); return { ok: true } },
    })
    const running = transport.start()
    await ready
    const id = em.pushEvent(payload)
    const event = await received
    await em.waitForAck(id, { timeoutMs: 5000 })
    await transport.close()
    assert.deepEqual(await running, { reason: 'closed' })
    await em.close()
    assert.equal(event.eventType, 'im.message.receive_v1')
    assert.equal(event.eventId, payload.header.event_id)
    console.log('received ' + event.eventType + ' ' + event.eventId + ', acked, closed')
  `, 30_000)
  console.log(`# emulator: ${r.stdout.trim()}`)
})
