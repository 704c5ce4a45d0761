// The napi binding, loaded through the loader that `napi build` generates.
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

type NativeBinding = typeof import('../native/index.cjs')
type Chan = ReturnType<NativeBinding['channelCreate']>

/** The per-message calls, installed by `installFastPaths` as plain Node-API functions. */
interface FastPaths {
  /** 0: sent; 1: no room; 2: a message larger than the ring started streaming. */
  channelTrySend(chan: Chan, ring: number, kind: number, data: Uint8Array, whole: boolean): number
  channelSendSync(chan: Chan, ring: number, kind: number, data: Uint8Array, timeoutMs: number, peerFd: number): void
  /** A receipt: `len * 256 + kind`, -1 nothing yet, -2 still streaming, -(n + 2) needs n bytes. */
  channelTryRecv(chan: Chan, ring: number, dst: Buffer): number
  channelRecvSync(chan: Chan, ring: number, dst: Buffer, timeoutMs: number, peerFd: number): number
}

const require = createRequire(import.meta.url)

function load(): NativeBinding & FastPaths {
  let binding: NativeBinding & FastPaths
  try {
    binding = require('../native/index.cjs')
  } catch (err) {
    throw noBinary(err)
  }
  binding.installFastPaths(binding)
  return binding
}

interface Manifest {
  name: string
  version: string
  repository?: string | { url?: string }
  napi?: { binaryName?: string; targets?: string[] }
}

const cpuNames: Record<string, string> = { x86_64: 'x64', aarch64: 'arm64', i686: 'ia32', armv7: 'arm' }

/** This machine as napi names a platform package's suffix: `linux-x64-gnu`, `darwin-arm64`, … */
function platformTriple(): string {
  const base = `${process.platform}-${process.arch}`
  if (process.platform === 'win32') return `${base}-msvc`
  if (process.platform !== 'linux') return base
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined
  return `${base}-${report?.header?.glibcVersionRuntime ? 'gnu' : 'musl'}`
}

/** The platforms a binary is released for, from the Rust targets in package.json (`x86_64-unknown-linux-gnu` → `linux-x64-gnu`). */
function releasedTriples(manifest: Manifest): string[] {
  return (manifest.napi?.targets ?? []).map((target) => {
    const [cpu = '', , os = '', abi] = target.split('-')
    return [os, cpuNames[cpu] ?? cpu, abi].filter(Boolean).join('-')
  })
}

/** Where the platform package stands: not installed, installed without its `.node`, or installed. */
function packageState(name: string): 'not installed' | 'installed, but without its binary' | 'installed, but its binary did not load' {
  let manifestPath: string
  try {
    manifestPath = require.resolve(`${name}/package.json`)
  } catch {
    return 'not installed'
  }
  const { main = '' } = JSON.parse(readFileSync(manifestPath, 'utf8')) as { main?: string }
  return existsSync(join(dirname(manifestPath), main)) ? 'installed, but its binary did not load' : 'installed, but without its binary'
}

/**
 * The first line of the load error that matters, out of the generated loader's chain (one per
 * attempt, WASI fallbacks included): a binary of this platform that failed to load, else the
 * missing one of this platform, else whatever was not about WASI.
 */
function shortCause(err: unknown, triple: string): string {
  const lines: string[] = []
  for (let e: unknown = (err as { cause?: unknown })?.cause ?? err; e; e = (e as { cause?: unknown }).cause) {
    lines.push((e instanceof Error ? e.message : String(e)).split('\n')[0]!.trim())
    if (!(e instanceof Error)) break
  }
  const ours = lines.filter((line) => line.includes(triple))
  return (
    ours.find((line) => !line.startsWith('Cannot find module')) ?? ours[0] ?? lines.find((line) => !/wasi/i.test(line)) ?? lines[0] ?? ''
  )
}

/** `ERR_MULTIPROC_NO_BINARY`: which platform, which package, whether it is supported, and the fix that works here. */
function noBinary(err: unknown): Error {
  const manifest = require('../package.json') as Manifest
  const triple = platformTriple()
  const pkg = `${manifest.name}-${triple}`
  const released = releasedTriples(manifest)
  const repoUrl = typeof manifest.repository === 'string' ? manifest.repository : manifest.repository?.url
  const repo = repoUrl ? `the repository (${repoUrl.replace(/^git\+/, '').replace(/\.git$/, '')})` : 'the repository'
  const inClone = existsSync(fileURLToPath(new URL('../crates/node/Cargo.toml', import.meta.url)))
  let message: string
  if (released.includes(triple) && inClone) {
    const file = `native/${manifest.napi?.binaryName ?? 'index'}.${triple}.node`
    const state = existsSync(fileURLToPath(new URL(`../${file}`, import.meta.url))) ? 'did not load' : 'is missing'
    message =
      `multiproc has no native binary for ${triple}, a supported platform: in this clone of the repository, ${file} ${state}. ` +
      'Fix: build it with `npm run build:native` (needs a Rust toolchain: cargo).'
  } else if (released.includes(triple)) {
    message =
      `multiproc has no native binary for ${triple}, a supported platform: it looked for the package ${pkg}@${manifest.version} ` +
      `(an optional dependency of multiproc), which is ${packageState(pkg)}. Fix: install multiproc again without ` +
      `--no-optional or --omit=optional (nor omit=optional in .npmrc or NPM_CONFIG_OMIT), so that npm installs ${pkg}; ` +
      `or build it from a clone of ${repo} (see its README).`
  } else {
    const os = ({ darwin: 'macOS', win32: 'Windows' } as Record<string, string>)[process.platform]
    const why = os ? `the Rust core has no backend for ${os} yet` : `prebuilt binaries exist for ${released.join(', ')}`
    const fix = os
      ? 'Fix: run it on Linux (x64 or arm64, glibc or musl), e.g. in a container, a VM or WSL 2.'
      : `Fix: build it from a clone of ${repo} with a Rust toolchain (\`npm ci && npm run build\`), then install that directory.`
    message = `multiproc has no native binary for ${triple}, which is not a supported platform (${why}), so there is no package ${pkg}. ${fix}`
  }
  return Object.assign(new Error(`${message} Cause: ${shortCause(err, triple)}`, { cause: err }), { code: 'ERR_MULTIPROC_NO_BINARY' })
}

export const native = load()
export type { Chan }
