#!/usr/bin/env bash
# Install the pinned agent CLIs (claude, codex, gemini) that the real-CLI tests drive.
#
# Contract:
#   - installs exactly the versions pinned below with npm into
#     "${AISWITCH_TEST_CACHE:-$HOME/.cache/aiswitch-test}/npm" (never globally);
#   - is idempotent: when every pinned version is already installed and runs, it
#     does nothing and exits 0 in well under a second;
#   - checks each CLI starts offline (`--version`), so a broken native-binary
#     postinstall is caught here rather than as a confusing test failure;
#   - prints the bin directory as its last stdout line (`bin_dir=/path`), so callers
#     can `export PATH="$(... | sed -n 's/^bin_dir=//p'):$PATH"`.
#
# The pins are aiswitch/data/clis.json's (the one list: aiswitch doctor and the tests read it).
set -euo pipefail

PINS="$(dirname "$0")/../../aiswitch/data/clis.json"
pin() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]][sys.argv[3]])' \
        "$PINS" "$1" "$2"
}
CLAUDE_PKG="$(pin claude package)"
CLAUDE_VERSION="$(pin claude version)"
CODEX_PKG="$(pin codex package)"
CODEX_VERSION="$(pin codex version)"
GEMINI_PKG="$(pin gemini package)"
GEMINI_VERSION="$(pin gemini version)"

CACHE_ROOT="${AISWITCH_TEST_CACHE:-$HOME/.cache/aiswitch-test}"
PREFIX="$CACHE_ROOT/npm"
BIN_DIR="$PREFIX/node_modules/.bin"
# A stamp records what the last successful install put there; it is only written
# after every CLI answered --version, so a half-finished install is retried.
STAMP="$PREFIX/.aiswitch-installed"
WANT="$CLAUDE_PKG@$CLAUDE_VERSION $CODEX_PKG@$CODEX_VERSION $GEMINI_PKG@$GEMINI_VERSION"

log() { printf 'agent-clis: %s\n' "$*" >&2; }

installed_version() {
    # Reads the version npm actually installed, without starting node for each package.
    local manifest="$PREFIX/node_modules/$1/package.json"
    [[ -f "$manifest" ]] || return 0
    sed -n 's/^  "version": "\(.*\)",*$/\1/p' "$manifest" | head -n1
}

versions_match() {
    [[ "$(installed_version "$CLAUDE_PKG")" == "$CLAUDE_VERSION" ]] &&
        [[ "$(installed_version "$CODEX_PKG")" == "$CODEX_VERSION" ]] &&
        [[ "$(installed_version "$GEMINI_PKG")" == "$GEMINI_VERSION" ]]
}

check_runs() {
    # Each CLI must start without network; the env is stripped so no user config or
    # key leaks in and nothing is contacted (no update checks, no telemetry).
    local name out
    for name in claude codex gemini; do
        if [[ ! -x "$BIN_DIR/$name" ]]; then
            log "missing executable $BIN_DIR/$name"
            return 1
        fi
        if ! out="$(env -i PATH="$BIN_DIR:/usr/local/bin:/usr/bin:/bin" HOME="$CACHE_ROOT/home" \
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1 \
            timeout 60 "$BIN_DIR/$name" --version 2>&1)"; then
            log "$name --version failed: $out"
            return 1
        fi
        log "$name --version: $(printf '%s' "$out" | tail -n1)"
    done
}

if ! command -v npm >/dev/null 2>&1; then
    log "npm is required (Node.js 18+); install Node.js and retry"
    exit 1
fi

mkdir -p "$PREFIX" "$CACHE_ROOT/home"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] && versions_match; then
    log "already installed: $WANT"
else
    log "installing $WANT into $PREFIX"
    # A private package.json keeps npm from walking up into some parent project.
    if [[ ! -f "$PREFIX/package.json" ]]; then
        printf '{\n  "name": "aiswitch-test-clis",\n  "private": true\n}\n' >"$PREFIX/package.json"
    fi
    rm -f "$STAMP"
    # --foreground-scripts: claude-code's postinstall selects its native binary; its
    # output is shown so a failure there is visible. Scripts must not be disabled.
    npm install --prefix "$PREFIX" --no-audit --no-fund --no-update-notifier \
        --save-exact --foreground-scripts \
        "$CLAUDE_PKG@$CLAUDE_VERSION" "$CODEX_PKG@$CODEX_VERSION" "$GEMINI_PKG@$GEMINI_VERSION" >&2
    if ! versions_match; then
        log "npm finished but the installed versions differ from the pins"
        exit 1
    fi
    check_runs
    printf '%s' "$WANT" >"$STAMP"
fi

echo "bin_dir=$BIN_DIR"
