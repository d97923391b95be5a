// Static checks of one built addon: its format and architecture, the N-API entry point
// Node looks up (napi_register_module_v1), its dynamic dependencies and its size. Read
// with the binutils/LLVM tools rather than a parser of our own: readelf for ELF, objdump
// for PE, llvm-objdump/llvm-nm (or otool/nm on macOS) for Mach-O.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import { parseTriple } from '@napi-rs/cli'

/** The glibc version every gnu binary stays at or below (see build-targets.mjs). */
export const GLIBC_FLOOR = '2.17'

// How each tool names the two architectures; the table shows x64 and arm64.
const ELF_MACHINE = { x64: ['Advanced Micro Devices X86-64'], arm64: ['AArch64'] }
// GNU objdump and llvm-objdump name PE machines differently.
const PE_ARCH = { x64: ['i386:x86-64', 'x86_64'], arm64: ['aarch64', 'arm64'] }
const MACHO_CPU = { x64: ['X86_64'], arm64: ['ARM64'] }
const archOf = (names, machine) => Object.keys(names).find((a) => names[a].includes(machine)) ?? machine
const OPENSSL = /ssl|crypto/i
// Windows DLLs every Windows has. mingw's own runtime DLLs (libgcc_s_seh-1, libwinpthread-1,
// libstdc++-6) are not among them: a binary needing them fails to load on a clean machine.
const WINDOWS_SYSTEM_DLL = /^(kernel32|ntdll|advapi32|bcrypt|bcryptprimitives|crypt32|ws2_32|userenv|secur32|ole32|oleaut32|shell32|user32|ncrypt|iphlpapi|msvcrt|ucrtbase|vcruntime140|synchronization|api-ms-win-[a-z0-9-]+)\.dll$/i

function tool(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 })
  if (r.error) throw new Error(`${cmd} is needed to inspect the artifact: ${r.error.message}`)
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`)
  return r.stdout
}

function firstTool(...candidates) {
  for (const c of candidates) if (spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0) return c
  return null
}

function compareVersions(a, b) {
  const pa = a.split('.').map(Number)
  const pb = b.split('.').map(Number)
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0)
    if (d) return d
  }
  return 0
}

function format(file) {
  const head = Buffer.alloc(4)
  const fd = fs.openSync(file, 'r')
  try { fs.readSync(fd, head, 0, 4, 0) } finally { fs.closeSync(fd) }
  if (head.toString('latin1') === '\x7fELF') return 'ELF'
  if (head.toString('latin1', 0, 2) === 'MZ') return 'PE'
  const magic = head.readUInt32LE(0)
  if (magic === 0xfeedfacf || magic === 0xcafebabe || head.readUInt32BE(0) === 0xcafebabe) return 'Mach-O'
  return 'unknown'
}

function inspectElf(file) {
  const out = tool('readelf', ['-h', '-d', '--dyn-syms', '-V', '-W', file])
  const machine = /Machine:\s+(.+)/.exec(out)?.[1].trim()
  const needed = [...out.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1])
  // A defined (not UND) global function symbol in the dynamic symbol table.
  const exported = out.split('\n').some((l) => /\sFUNC\s+GLOBAL\s+DEFAULT\s+\d+\s+napi_register_module_v1(@|\s|$)/.test(l))
  const glibc = [...new Set([...out.matchAll(/GLIBC_(\d+(?:\.\d+)+)/g)].map((m) => m[1]))].sort(compareVersions)
  return { machine: archOf(ELF_MACHINE, machine), needed, exported, glibc: glibc.at(-1) ?? null }
}

function inspectPe(file) {
  // llvm-objdump reads arm64 PE too; Debian's x64 binutils objdump only x64.
  const objdump = firstTool('llvm-objdump', 'objdump', 'x86_64-w64-mingw32-objdump')
  if (!objdump) throw new Error('llvm-objdump or objdump is needed to inspect a PE file')
  const out = tool(objdump, ['-p', '-f', file])
  const machine = /architecture:\s*([^,\s]+)/.exec(out)?.[1]
  // One entry per DLL, whatever its case (a DLL can be imported twice, e.g. delay-loaded).
  const needed = [...new Map([...out.matchAll(/DLL Name:\s*(\S+)/g)].map((m) => [m[1].toLowerCase(), m[1]])).values()]
  // The export table: GNU prints "[Ordinal/Name Pointer] Table", LLVM "Export Table:"
  // (whose "DLL name", lower-case n, is the addon itself); imports may come before or after.
  const exportsPart = (out.split(/\[Ordinal\/Name Pointer\] Table|Export Table:/)[1] ?? '').split(/The Import Tables|Import Table:/i)[0]
  const exported = /\bnapi_register_module_v1\b/.test(exportsPart)
  return { machine: archOf(PE_ARCH, machine), needed, exported, glibc: null }
}

function inspectMachO(file) {
  const objdump = firstTool('llvm-objdump')
  const nm = firstTool('llvm-nm', 'nm')
  let header, libs, id
  if (objdump) {
    header = tool(objdump, ['--macho', '--private-header', file])
    libs = tool(objdump, ['--macho', '--dylibs-used', file])
    id = tool(objdump, ['--macho', '--dylib-id', file])
  } else {
    header = tool('otool', ['-hv', file])
    libs = tool('otool', ['-L', file])
    id = tool('otool', ['-D', file])
  }
  const machine = /\b(X86_64|ARM64)\b/.exec(header)?.[1]
  const listed = (text) => text.split('\n').slice(1).map((l) => l.trim().split(' (')[0]).filter(Boolean)
  // A dylib lists its own install name among the libraries it uses.
  const own = new Set(listed(id))
  const needed = listed(libs).filter((l) => !own.has(l))
  const syms = tool(nm, ['-gU', file])
  const exported = /\s_napi_register_module_v1$/m.test(syms)
  return { machine: archOf(MACHO_CPU, machine), needed, exported, glibc: null }
}

/**
 * Inspects `file`, built for `target`. Returns what was read and `problems`: a wrong
 * format or architecture, a missing entry point or a forbidden dependency.
 */
export function inspect(file, target) {
  const { platform, arch, abi } = parseTriple(target)
  const fmt = format(file)
  const want = { linux: 'ELF', win32: 'PE', darwin: 'Mach-O' }[platform]
  const size = fs.statSync(file).size
  const problems = []
  if (fmt !== want) return { target, format: fmt, size, problems: [`format ${fmt}, expected ${want}`] }
  const info = fmt === 'ELF' ? inspectElf(file) : fmt === 'PE' ? inspectPe(file) : inspectMachO(file)
  if (info.machine !== arch) problems.push(`architecture ${info.machine}, expected ${arch}`)
  if (!info.exported) problems.push('napi_register_module_v1 is not exported')
  const openssl = info.needed.filter((n) => OPENSSL.test(n))
  if (openssl.length) problems.push(`links OpenSSL: ${openssl.join(', ')}`)
  if (platform === 'linux' && abi === 'gnu') {
    if (info.glibc && compareVersions(info.glibc, GLIBC_FLOOR) > 0) problems.push(`needs GLIBC_${info.glibc}, above ${GLIBC_FLOOR}`)
  }
  if (platform === 'linux' && abi === 'musl') {
    if (info.glibc) problems.push(`musl binary needs glibc symbols (GLIBC_${info.glibc})`)
    const glibcLibs = info.needed.filter((n) => /^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|ld-linux)/.test(n))
    if (glibcLibs.length) problems.push(`musl binary needs glibc libraries: ${glibcLibs.join(', ')}`)
  }
  if (platform === 'darwin') {
    // libSystem, the system frameworks that security-framework links (the platform
    // certificate store) and the other /usr/lib dylibs Rust's std may link (libiconv):
    // all ship with every macOS. Anything else (Homebrew, @rpath) would not be there.
    const other = info.needed.filter((n) => !/^\/usr\/lib\/[^/]+\.dylib$/.test(n) && !/^\/System\/Library\/Frameworks\//.test(n))
    if (other.length) problems.push(`needs libraries outside macOS itself: ${other.join(', ')}`)
    if (!info.needed.includes('/usr/lib/libSystem.B.dylib')) problems.push('does not link libSystem')
  }
  if (platform === 'win32') {
    const other = info.needed.filter((n) => !WINDOWS_SYSTEM_DLL.test(n))
    if (other.length) problems.push(`needs DLLs a clean Windows lacks: ${other.join(', ')}`)
  }
  return { target, format: fmt, size, ...info, problems }
}

/** One row per result, for the test's table. */
export function table(rows) {
  const head = ['target', 'format', 'arch', 'napi export', 'glibc', 'dynamic deps', 'size', 'verdict']
  const body = rows.map((r) => r.missing
    ? [r.target, '-', '-', '-', '-', '-', '-', `not built: ${r.missing}`]
    : [
        r.target, r.format, r.machine ?? '-', r.exported ? 'yes' : 'NO', r.glibc ?? '-',
        (r.needed ?? []).map((n) => n.replace(/^.*\//, '')).join(' ') || '(none)',
        `${(r.size / 1048576).toFixed(2)} MiB`, r.problems.length ? `FAIL: ${r.problems.join('; ')}` : 'ok',
      ])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => String(b[i]).length)))
  const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n')
}
