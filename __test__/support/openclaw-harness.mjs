// The setting the OpenClaw tests run in: an emulator serving https/wss with a test CA, a
// "private deployment" front that serves discovery under a path prefix (what OpenClaw's
// httpInstance rewrites https://open.feishu.cn to) and forwards it to the emulator, an
// opaque agent (no readable proxy; it carries the CA for the SDK's HTTP instance), and the
// examples/openclaw TypeScript compiled to CommonJS so the native monitor can run.
import fs from 'node:fs'
import https from 'node:https'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { FeishuEmulator } from '../../index.js'

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url))
export const PREFIX = '/private/open-apis-gw'

/** Proxy variables would route loopback traffic elsewhere; OpenClaw reads them, so clear them. */
export function clearProxyEnv() {
  for (const k of ['HTTPS_PROXY', 'HTTP_PROXY', 'ALL_PROXY', 'NO_PROXY', 'https_proxy', 'http_proxy', 'all_proxy', 'no_proxy']) delete process.env[k]
}

/**
 * The TLS emulator and its private-deployment front. `discoveries` records every
 * discovery request the front got: its path, User-Agent and time.
 */
export async function privateDeployment(emulatorOptions = {}) {
  const certs = FeishuEmulator.generateTestCertificates()
  const emulator = await FeishuEmulator.start({ ...emulatorOptions, tls: { certPem: certs.certPem, keyPem: certs.keyPem } })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'openclaw-ca-'))
  const caFile = path.join(dir, 'ca.pem')
  fs.writeFileSync(caFile, certs.caPem)
  const discoveries = []
  const front = https.createServer({ cert: certs.certPem, key: certs.keyPem }, (req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      discoveries.push({ at: Date.now(), path: req.url, userAgent: req.headers['user-agent'] })
      if (req.method !== 'POST' || req.url !== `${PREFIX}/callback/ws/endpoint`) {
        res.statusCode = 404
        res.end()
        return
      }
      const up = https.request(`${emulator.domain}/callback/ws/endpoint`, { method: 'POST', ca: certs.caPem, headers: { 'content-type': 'application/json' } }, (r) => {
        res.statusCode = r.statusCode
        r.pipe(res)
      })
      up.on('error', () => {
        res.statusCode = 502
        res.end()
      })
      up.end(Buffer.concat(chunks))
    })
  })
  await new Promise((resolve) => front.listen(0, '127.0.0.1', resolve))
  const agent = new https.Agent({ ca: certs.caPem, keepAlive: false })
  return {
    emulator,
    certs,
    caFile,
    discoveries,
    agent,
    base: `https://127.0.0.1:${front.address().port}${PREFIX}`,
    async close() {
      agent.destroy()
      await new Promise((resolve) => front.close(resolve))
      front.closeAllConnections()
      await emulator.close()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

let built
/** examples/openclaw/*.ts as CommonJS in a temp dir whose node_modules links this package. */
export function loadExample() {
  if (built) return built
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'openclaw-example-'))
  fs.mkdirSync(path.join(dir, 'node_modules'))
  fs.symlinkSync(repoRoot, path.join(dir, 'node_modules', 'feishu-transport'), 'dir')
  fs.writeFileSync(path.join(dir, 'package.json'), '{"type":"commonjs"}')
  for (const name of ['openclaw-types', 'client', 'monitor-websocket']) {
    const source = fs.readFileSync(path.join(repoRoot, 'examples', 'openclaw', `${name}.ts`), 'utf8')
    const out = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } })
    fs.writeFileSync(path.join(dir, `${name}.js`), out.outputText)
  }
  const require = createRequire(path.join(dir, 'index.js'))
  built = { dir, monitor: require('./monitor-websocket.js'), types: require('./openclaw-types.js') }
  return built
}
