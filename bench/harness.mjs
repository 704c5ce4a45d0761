/**
 * What the benchmark scripts share: running one case per process under a hard time limit, the
 * machine's description, and table formatting.
 */
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'

/** A case prints its result as one line starting with this. */
export const RESULT_MARK = '@@RESULT '

/** Runs a command as its own process group; resolves with its result line or a failure. */
export function runIsolated(cmd, args, limitMs) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    let timedOut = false
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    const killGroup = () => {
      try {
        process.kill(-child.pid, 'SIGKILL')
      } catch {}
    }
    running.add(killGroup)
    const timer = setTimeout(() => {
      timedOut = true
      killGroup()
    }, limitMs)
    child.on('error', (e) => {
      clearTimeout(timer)
      running.delete(killGroup)
      resolve({ ok: false, error: e.message })
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      killGroup() // anything the case left behind in its group
      running.delete(killGroup)
      const line = out.split('\n').find((l) => l.startsWith(RESULT_MARK))
      // The last lines that say something (not stack frames) of what the case wrote to stderr.
      const said = err.split('\n').filter((l) => l.trim() && !/^\s+at /.test(l))
      const stderrTail = said.slice(-2).join(' · ').slice(0, 300)
      const withStderr = (msg) => (stderrTail ? `${msg}; stderr: ${stderrTail}` : msg)
      if (timedOut) return resolve({ ok: false, error: withStderr(`timed out: killed after ${limitMs / 1000} s`) })
      if (!line) return resolve({ ok: false, error: withStderr(`exited (${signal ?? code}) without a result`) })
      const r = JSON.parse(line.slice(RESULT_MARK.length))
      if (!r.ok) r.error = withStderr(r.error)
      else if (stderrTail) r.stderr = stderrTail
      resolve(r)
    })
  })
}

const running = new Set()
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const k of running) k()
    process.exit(130)
  })
}

export function pythonInfo() {
  try {
    const v = execFileSync('python3', ['-c', 'import sys, multiprocessing as m; print(sys.version.split()[0], m.get_start_method())'], {
      encoding: 'utf8',
      timeout: 10_000,
    })
    const [version, startMethod] = v.trim().split(' ')
    return { version, startMethod }
  } catch {
    return null
  }
}

export function machineInfo(python) {
  let cpu = os.cpus()[0]?.model ?? 'unknown'
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))
    if (m) cpu = m[1].trim()
  } catch {}
  return {
    cpu,
    cores: os.availableParallelism(),
    ramGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    kernel: `${os.type()} ${os.release()}`,
    arch: os.arch(),
    node: process.version,
    python: python ? `${python.version} (start method ${python.startMethod})` : 'not found',
    loadAvg: os.loadavg().map((x) => +x.toFixed(2)),
  }
}

export function shmEntries() {
  try {
    return new Set(readdirSync('/dev/shm'))
  } catch {
    return new Set()
  }
}

/** Three significant digits, thousands separated. */
export function fmt(x) {
  if (!Number.isFinite(x)) return '–'
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x) || 1)))
  const rounded = Number(x.toPrecision(3))
  return rounded.toLocaleString('en-US', { minimumFractionDigits: Math.min(digits, 2), maximumFractionDigits: Math.min(digits, 2) })
}

export function times(x) {
  return x >= 10 ? `${Math.round(x)}×` : `${x.toFixed(1)}×`
}

export function table(header, rows) {
  rows = rows.map((r) => r.map((c) => String(c).replaceAll('|', '\\|')))
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)))
  const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n')
}

/**
 * Writes `<dir><name>-<date>.json` (the whole report), `<name>-latest.md` and any extra
 * `<name>-latest.<ext>` files; returns the names written.
 */
export function writeResults(dir, name, report, md, extra = {}) {
  mkdirSync(dir, { recursive: true })
  const stamp = report.date.slice(0, 19).replace(/:/g, '-')
  const written = [`${name}-${stamp}.json`, `${name}-latest.md`]
  writeFileSync(`${dir}${written[0]}`, `${JSON.stringify(report, null, 2)}\n`)
  writeFileSync(`${dir}${written[1]}`, md)
  for (const [ext, content] of Object.entries(extra)) {
    written.push(`${name}-latest.${ext}`)
    writeFileSync(`${dir}${name}-latest.${ext}`, content)
  }
  return written
}

/** In a case process: runs the case, prints its result line (or its failure) and exits. */
export async function caseMain(run, describeError = (err) => err?.stack?.split('\n').slice(0, 3).join(' ') ?? String(err)) {
  let line
  try {
    line = { ok: true, ...(await run()) }
  } catch (err) {
    line = { ok: false, error: describeError(err) }
  }
  process.stdout.write(`${RESULT_MARK}${JSON.stringify(line)}\n`)
  process.exit(0)
}
