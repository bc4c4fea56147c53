#!/usr/bin/env bash
# Install ccusage (the reference for token reports) for the parity tests and benchmarks.
#
# Idempotent: a no-op (well under a second) when the pinned version is already installed.
# Installs into ${AISWITCH_TEST_CACHE:-$HOME/.cache/aiswitch-test}/ccusage, never globally,
# then checks that it runs offline (-O uses ccusage's bundled price table, no network).
set -euo pipefail

CCUSAGE_VERSION="20.0.24"
CACHE_ROOT="${AISWITCH_TEST_CACHE:-$HOME/.cache/aiswitch-test}"
PREFIX="$CACHE_ROOT/ccusage"
STAMP="$PREFIX/.installed-$CCUSAGE_VERSION"
BIN="$PREFIX/node_modules/.bin/ccusage"

verify() {
    # An empty config dir: ccusage must answer with valid JSON, offline, without a network call.
    local empty
    empty="$(mktemp -d)"
    mkdir -p "$empty/projects"
    if ! CLAUDE_CONFIG_DIR="$empty" "$BIN" daily --json -O >"$empty/out.json" 2>"$empty/err.txt"; then
        echo "ccusage.sh: $BIN did not run offline:" >&2
        cat "$empty/err.txt" >&2
        rm -rf "$empty"
        return 1
    fi
    rm -rf "$empty"
}

if [[ -f "$STAMP" && -x "$BIN" ]]; then
    exit 0
fi

command -v npm >/dev/null || { echo "ccusage.sh: npm is required (install Node.js 20+)" >&2; exit 1; }
mkdir -p "$PREFIX"
cd "$PREFIX"
[[ -f package.json ]] || echo '{"name":"aiswitch-test-ccusage","private":true}' >package.json
npm install --no-audit --no-fund --loglevel=error \
    "ccusage@$CCUSAGE_VERSION" "@ccusage/ccusage-linux-x64@$CCUSAGE_VERSION"
verify
touch "$STAMP"
echo "ccusage $CCUSAGE_VERSION installed at $BIN"
