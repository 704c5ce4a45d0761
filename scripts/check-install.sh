#!/usr/bin/env bash
# Installs multiproc as a user would: from the tarballs `npm run pack:all` writes, into a new
# project in a temporary directory, with no Rust toolchain on PATH and every C compiler replaced
# by a stub that records a call. Then, on each Node given, an ESM script, a CommonJS script and a
# strict TypeScript file (scripts/install-check/) each run a Pool.map, a Process fed through a
# Queue and a Lock; arethetypeswrong checks the main tarball's types; and the loader's
# ERR_MULTIPROC_NO_BINARY message is checked for unsupported platforms and for a missing binary.
#
#   scripts/check-install.sh [--require-all] [NODE...]
#
# NODE: node binaries to run the scripts on (default: the node on PATH). --require-all is passed
# to the pack step (the release: every configured target must have been built).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
pack_args=()
if [ "${1:-}" = --require-all ]; then
  pack_args+=(--require-all)
  shift
fi
nodes=("$@")
[ ${#nodes[@]} -gt 0 ] || nodes=("$(command -v node)")

echo "== pack"
node scripts/pack.mjs "${pack_args[@]}"
name=$(node -p 'require("./package.json").name')
version=$(node -p 'require("./package.json").version')
main_tgz=$PWD/pack/$name-$version.tgz

echo "== arethetypeswrong $(basename "$main_tgz")"
node_modules/.bin/attw "$main_tgz"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
project=$tmp/project
mkdir -p "$project" "$tmp/stubs"
cp scripts/install-check/* "$project/"

# PATH without cargo and rustc; compilers and build tools that would run are stubs that log.
for tool in cc gcc g++ c++ clang ld make cmake node-gyp; do
  printf '#!/bin/sh\necho "%s $*" >> "%s/compiled.log"\nexit 1\n' "$tool" "$tmp" >"$tmp/stubs/$tool"
  chmod +x "$tmp/stubs/$tool"
done
clean_path=$tmp/stubs
IFS=: read -ra path_dirs <<<"$PATH"
for dir in "${path_dirs[@]}"; do
  [ -e "$dir/cargo" ] || [ -e "$dir/rustc" ] || clean_path+=":$dir"
done
if PATH=$clean_path command -v cargo >/dev/null || PATH=$clean_path command -v rustc >/dev/null; then
  echo "check-install: cargo or rustc is still on PATH" >&2
  exit 1
fi

# The project depends on multiproc alone; the platform packages come in as its optional
# dependencies, which `overrides` points at their tarballs (as the registry would serve them).
node - "$project/package.json" "$main_tgz" pack/"$name"-*-"$version".tgz <<'EOF'
const { writeFileSync } = require('node:fs')
const { basename, resolve } = require('node:path')
const [out, main, ...platforms] = process.argv.slice(2)
const devVersion = (pkg) => require(resolve('node_modules', pkg, 'package.json')).version
const overrides = Object.fromEntries(platforms.map((tgz) => [basename(tgz).replace(/-\d+\.\d+\.\d+.*\.tgz$/, ''), `file:${resolve(tgz)}`]))
const manifest = {
  name: 'multiproc-install-check',
  private: true,
  dependencies: { multiproc: `file:${main}` },
  devDependencies: { typescript: devVersion('typescript'), '@types/node': devVersion('@types/node') },
  overrides,
}
writeFileSync(out, `${JSON.stringify(manifest, null, 2)}\n`)
EOF

cd "$project"
echo "== npm install (no cargo, no rustc; compilers stubbed)"
PATH=$clean_path npm install --no-audit --no-fund --prefer-offline --foreground-scripts
if [ -s "$tmp/compiled.log" ]; then
  echo "check-install: the install ran a compiler:" >&2
  cat "$tmp/compiled.log" >&2
  exit 1
fi
node - "$name" <<'EOF'
// Nothing an install could compile with: no install scripts, no binding.gyp, a prebuilt .node.
const { existsSync, readdirSync } = require('node:fs')
const name = process.argv[2]
const installed = readdirSync('node_modules').filter((dir) => dir === name || dir.startsWith(`${name}-`))
for (const dir of installed) {
  const { scripts = {} } = require(`./node_modules/${dir}/package.json`)
  const hooks = ['preinstall', 'install', 'postinstall'].filter((hook) => scripts[hook])
  if (hooks.length > 0 || existsSync(`node_modules/${dir}/binding.gyp`)) throw new Error(`${dir} would build at install (${hooks})`)
}
const binaries = installed.filter((dir) => readdirSync(`node_modules/${dir}`).some((file) => file.endsWith('.node')))
if (binaries.length !== 1) throw new Error(`expected one platform package with a .node, found: ${binaries}`)
console.log(`installed: ${installed.join(', ')}; prebuilt binary from ${binaries[0]}`)
EOF

echo "== tsc --noEmit (strict, skipLibCheck: false)"
PATH=$clean_path npx --no-install tsc --noEmit -p .
PATH=$clean_path npx --no-install tsc -p . # build/: the same, with `await using` turned into try/finally

for node in "${nodes[@]}"; do
  major=$("$node" -p 'process.versions.node.split(".")[0]')
  echo "== Node $("$node" --version)"
  "$node" esm.mjs
  "$node" cjs.cjs
  "$node" build/typed.mjs
  if [ "$major" -ge 24 ]; then
    "$node" typed.mts # Node runs the TypeScript itself, `await using` included
  fi
done

echo "== ERR_MULTIPROC_NO_BINARY"
node=${nodes[0]}
fake() { env FAKE_PLATFORM="$1" FAKE_ARCH="$2" "$node" --import ./fake-platform.mjs expect-no-binary.mjs "${@:3}"; }
for how in import require; do
  fake darwin arm64 "$how" darwin-arm64 'not a supported platform' "$name-darwin-arm64" 'no backend for macOS' 'run it on Linux'
  fake win32 x64 "$how" win32-x64-msvc 'not a supported platform' "$name-win32-x64-msvc" 'no backend for Windows'
  fake linux riscv64 "$how" linux-riscv64- 'not a supported platform' "$name-linux-riscv64-" 'from a clone of the repository'
done
# shellcheck disable=SC2016 # JavaScript, not shell
triple=$("$node" -p '`linux-${process.arch}-${process.report.getReport().header.glibcVersionRuntime ? "gnu" : "musl"}`')
platform_dir=node_modules/$name-$triple
rm "$platform_dir"/*.node
for how in import require; do
  "$node" expect-no-binary.mjs "$how" "$triple, a supported platform" "$name-$triple@$version" \
    'installed, but without its binary' '--omit=optional' 'from a clone of the repository'
done
rm -r "$platform_dir"
for how in import require; do
  "$node" expect-no-binary.mjs "$how" "$triple, a supported platform" "$name-$triple@$version" 'not installed' '--no-optional'
done

echo "install check passed in $((SECONDS - started)) s"
