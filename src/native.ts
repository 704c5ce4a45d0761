// The napi binding, loaded through the loader that `napi build` generates.
import { createRequire } from 'node:module'

type NativeBinding = typeof import('../native/index.js')

const require = createRequire(import.meta.url)

function load(): NativeBinding {
  try {
    return require('../native/index.cjs')
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
}

export const native: NativeBinding = load()
export type Chan = ReturnType<NativeBinding['channelCreate']>
