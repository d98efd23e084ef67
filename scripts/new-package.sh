#!/usr/bin/env bash
# Scaffolds packages/<name>: package.json with an exports map (types first), tsconfig.json for typecheck
# and lint (covers tests), tsconfig.build.json for the build (excludes tests). Deps are @dmasim names.
set -euo pipefail
name=$1; shift
dir=packages/$name
mkdir -p "$dir/src"
deps=""; refs=""
for d in "$@"; do
  deps="$deps\"@dmasim/$d\": \"workspace:*\","
  refs="$refs{ \"path\": \"../$d/tsconfig.build.json\" },"
done
deps=${deps%,}; refs=${refs%,}
cat > "$dir/package.json" <<JSON
{
  "name": "@dmasim/$name",
  "version": "0.1.0",
  "type": "module",
  "license": "MIT",
  "sideEffects": false,
  "exports": {
    ".": {
      "types": "./dist/index.d.ts",
      "import": "./dist/index.js"
    }
  },
  "files": ["dist", "src", "!src/**/*.test.ts", "!src/**/*.bench.ts"],
  "scripts": {
    "build": "tsc -b tsconfig.build.json",
    "typecheck": "tsc -p tsconfig.json --noEmit",
    "lint": "eslint src",
    "test": "vitest run --project $name --root ../..",
    "bench": "vitest bench --run --project $name --root ../.."
  },
  "dependencies": { $deps }
}
JSON
cat > "$dir/tsconfig.json" <<JSON
{
  "extends": "../../tsconfig.dev.json",
  "include": ["src"]
}
JSON
cat > "$dir/tsconfig.build.json" <<JSON
{
  "extends": "../../tsconfig.base.json",
  "compilerOptions": {
    "composite": true,
    "rootDir": "src",
    "outDir": "dist",
    "tsBuildInfoFile": "dist/.tsbuildinfo"
  },
  "include": ["src"],
  "exclude": ["src/**/*.test.ts", "src/**/*.bench.ts", "src/**/test-*.ts"],
  "references": [ $refs ]
}
JSON
# The fields every published package shares (repository, engines, publishConfig, files, prepack…);
# the description and keywords are the package's own: write them in its package.json.
node "$(dirname "$0")/package-fields.mjs" --fix || true
