// The napi binding, loaded through the loader that `napi build` generates.
import { createRequire } from 'node:module'

type NativeBinding = typeof import('../native/index.js')

const require = createRequire(import.meta.url)

export const native: NativeBinding = require('../native/index.cjs')
export type Chan = ReturnType<NativeBinding['channelCreate']>
