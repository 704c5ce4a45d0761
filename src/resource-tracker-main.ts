/**
 * The resource tracker process (see `resource-tracker.ts`): collects registered segment names
 * from its pipe and, at end-of-file, unlinks those still registered.
 */
import { createReadStream } from 'node:fs'

import { native } from './native.js'

// Like Python's tracker: an interrupt of the session must not stop the cleanup.
process.on('SIGINT', () => {})
process.on('SIGTERM', () => {})

const names = new Set<string>()
let pending = ''

function handle(line: string): void {
  if (!line) return
  try {
    const { op, name } = JSON.parse(line) as { op: string; name: string }
    if (op === 'R') names.add(name)
    else if (op === 'U') names.delete(name)
  } catch {}
}

const input = createReadStream('', { fd: Number(process.argv[2]), encoding: 'utf8' })
input.on('data', (chunk) => {
  pending += chunk
  const lines = pending.split('\n')
  pending = lines.pop() ?? ''
  for (const line of lines) handle(line)
})
const finish = () => {
  handle(pending)
  for (const name of names) {
    try {
      native.shmUnlink(name)
    } catch {}
  }
  process.exit(0)
}
input.on('end', finish)
input.on('error', finish)
