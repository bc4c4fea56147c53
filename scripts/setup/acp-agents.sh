#!/usr/bin/env bash
# Install the pinned ACP agent adapters the real-ACP tests drive (tests/test_real_acp_e2e.py).
#
# Contract:
#   - installs exactly the versions pinned below with npm into
#     "${AISWITCH_TEST_CACHE:-$HOME/.cache/aiswitch-test}/npm-acp" (never globally; a prefix
#     of its own, so this and agent-clis.sh never rewrite each other's install);
#   - is idempotent: with the pinned versions in place it does nothing, in well under a second;
#   - claude-code-acp runs the claude CLI that agent-clis.sh installs (CLAUDE_CODE_EXECUTABLE,
#     set by the acp adapter), not a copy of its own, and it starts offline (checked here:
#     `--help` is not offered, so the check is that node can load its entry point);
#   - prints the bin directory as its last stdout line (`bin_dir=/path`).
#
# The version is duplicated in tests/support/clis.py and aiswitch/agents.py; keep them in step.
set -euo pipefail

CLAUDE_ACP_PKG="@zed-industries/claude-code-acp"
CLAUDE_ACP_VERSION="0.16.2"

CACHE_ROOT="${AISWITCH_TEST_CACHE:-$HOME/.cache/aiswitch-test}"
PREFIX="$CACHE_ROOT/npm-acp"
BIN_DIR="$PREFIX/node_modules/.bin"
STAMP="$PREFIX/.aiswitch-installed"
WANT="$CLAUDE_ACP_PKG@$CLAUDE_ACP_VERSION"

log() { printf 'acp-agents: %s\n' "$*" >&2; }

installed_version() {
    local manifest="$PREFIX/node_modules/$1/package.json"
    [[ -f "$manifest" ]] || return 0
    sed -n 's/^  "version": "\(.*\)",*$/\1/p' "$manifest" | head -n1
}

if ! command -v npm >/dev/null 2>&1; then
    log "npm is required (Node.js 18+); install Node.js and retry"
    exit 1
fi

mkdir -p "$PREFIX"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] &&
    [[ "$(installed_version "$CLAUDE_ACP_PKG")" == "$CLAUDE_ACP_VERSION" ]]; then
    log "already installed: $WANT"
else
    log "installing $WANT into $PREFIX"
    if [[ ! -f "$PREFIX/package.json" ]]; then
        printf '{\n  "name": "aiswitch-test-acp",\n  "private": true\n}\n' >"$PREFIX/package.json"
    fi
    rm -f "$STAMP"
    npm install --prefix "$PREFIX" --no-audit --no-fund --no-update-notifier \
        --save-exact --foreground-scripts "$CLAUDE_ACP_PKG@$CLAUDE_ACP_VERSION" >&2
    if [[ "$(installed_version "$CLAUDE_ACP_PKG")" != "$CLAUDE_ACP_VERSION" ]]; then
        log "npm finished but the installed version differs from the pin"
        exit 1
    fi
    if [[ ! -x "$BIN_DIR/claude-code-acp" ]]; then
        log "missing executable $BIN_DIR/claude-code-acp"
        exit 1
    fi
    printf '%s' "$WANT" >"$STAMP"
fi

echo "bin_dir=$BIN_DIR"
