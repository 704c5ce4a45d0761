// The napi binding, loaded through the loader that `napi build` generates.
import { createRequire } from 'node:module'

type NativeBinding = typeof import('../native/index.js')
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
    const libc =
      process.platform === 'linux'
        ? (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } })?.header?.glibcVersionRuntime
          ? '-gnu'
          : '-musl'
        : ''
    throw Object.assign(
      new Error(
        `multiproc has no native binary for ${process.platform}-${process.arch}${libc} here (${(err as Error).message}). ` +
          'Linux x64 and arm64 are built for release; elsewhere, build it from source: install a Rust toolchain (cargo), ' +
          'then run `npm run build:native` in the package directory.',
        { cause: err },
      ),
      { code: 'ERR_MULTIPROC_NO_BINARY' },
    )
  }
  binding.installFastPaths(binding)
  return binding
}

export const native = load()
export type { Chan }
