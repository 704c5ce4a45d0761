// `npm run pack:all` (after a build): writes into pack/ the tarballs as they would be published,
// the main package and one for each platform package whose binary was built here
// (native/<binary>.<platform>.node). napi's own commands do the work in a staging copy, so the
// repository's files stay as they are: `napi artifacts` puts each built binary into its npm/
// package, and `napi pre-publish` checks those packages, gives them the main package's version
// and names them in its optionalDependencies. Targets not built here are named there too (a
// published package must find every platform's binary), but are not packed.
//
//   --require-all     fail unless every configured target was built (the release job)
//   --check-manifest  only check that ./package.json names every platform package (prepublishOnly:
//                     the repository's own package.json does not, so publish the tarballs instead)
import { execFileSync } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { readNapiConfig } from '@napi-rs/cli'

const root = fileURLToPath(new URL('..', import.meta.url))
const { values: flags } = parseArgs({ options: { 'require-all': { type: 'boolean' }, 'check-manifest': { type: 'boolean' } } })
const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'))
const fail = (message) => {
  console.error(`pack: ${message}`)
  process.exit(1)
}

const { targets, binaryName, packageName, packageJson } = await readNapiConfig(join(root, 'package.json'))
const platformPackage = (target) => `${packageName}-${target.platformArchABI}`

if (flags['check-manifest']) {
  const missing = targets.map(platformPackage).filter((name) => packageJson.optionalDependencies?.[name] !== packageJson.version)
  if (missing.length > 0) {
    fail(
      `package.json does not name ${missing.join(', ')} at ${packageJson.version} in optionalDependencies, so the published ` +
        'package would find no binary. Publish the tarballs that `npm run pack:all` writes (npm publish ./pack/<file>.tgz).',
    )
  }
  process.exit(0)
}

const built = targets.filter((target) => existsSync(join(root, 'native', `${binaryName}.${target.platformArchABI}.node`)))
const unbuilt = targets.filter((target) => !built.includes(target))
if (built.length === 0) fail('no binary in native/: run `npm run build` first')
if (flags['require-all'] && unbuilt.length > 0) fail(`no binary for ${unbuilt.map((t) => t.triple).join(', ')} in native/`)
if (!existsSync(join(root, 'dist', 'index.d.cts'))) fail('dist/ is not built: run `npm run build` first')

// The staging copy: what the main package ships (as `npm pack` lists it), the built binaries and npm/.
const stage = mkdtempSync(join(tmpdir(), 'multiproc-pack-'))
try {
  const listing = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' }))
  for (const { path } of listing[0].files) {
    mkdirSync(dirname(join(stage, path)), { recursive: true })
    copyFileSync(join(root, path), join(stage, path))
  }
  for (const target of built) {
    const file = join('native', `${binaryName}.${target.platformArchABI}.node`)
    copyFileSync(join(root, file), join(stage, file))
  }
  cpSync(join(root, 'npm'), join(stage, 'npm'), { recursive: true })

  // napi works on the targets built here; the others are named below.
  const config = join(stage, 'napi.pack.json')
  const { targets: _all, ...napi } = packageJson.napi
  writeFileSync(config, JSON.stringify({ ...napi, targets: built.map((target) => target.triple) }))
  const napiCli = join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')
  const runNapi = (...args) => {
    // The config file overrides package.json's napi field (napi warns about that on stderr).
    const out = execFileSync(process.execPath, [napiCli, ...args, '--cwd', stage, '-c', config], { encoding: 'utf8', stdio: 'pipe' })
    if (out.trim()) console.log(out.trim())
  }
  runNapi('artifacts', '--output-dir', 'native', '--npm-dir', 'npm')
  runNapi('pre-publish', '--npm-dir', 'npm', '--tag-style', 'npm', '--skip-optional-publish', '--no-gh-release')

  const manifestPath = join(stage, 'package.json')
  const manifest = readJson(manifestPath)
  const named = Object.fromEntries(targets.map((target) => [platformPackage(target), packageJson.version]))
  manifest.optionalDependencies = { ...manifest.optionalDependencies, ...named }
  writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`)
  rmSync(config)

  const out = join(root, 'pack')
  rmSync(out, { recursive: true, force: true })
  mkdirSync(out)
  const dirs = [stage, ...built.map((target) => join(stage, 'npm', target.platformArchABI))]
  for (const dir of dirs) {
    const [{ filename, files }] = JSON.parse(
      execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', out], { cwd: dir, encoding: 'utf8' }),
    )
    console.log(`${relative(root, join(out, filename))}  (${files.length} files)`)
  }
  if (unbuilt.length > 0) console.log(`not built here, so not packed: ${unbuilt.map(platformPackage).join(', ')}`)
} finally {
  rmSync(stage, { recursive: true, force: true })
}
