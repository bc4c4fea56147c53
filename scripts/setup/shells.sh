#!/usr/bin/env bash
# Install the real shells the shell-integration tests run: bash, zsh and fish.
#
# Idempotent: when all three are on PATH it does nothing. Otherwise it installs zsh and
# fish from Debian's packages (bash is always there on Debian). It runs `apt-get update`
# only when the package lists are missing, because an update is the slow part and a fresh
# image ships without lists. PowerShell is not in Debian's repositories; its output is
# tested against its quoting rules (tests/test_shell_quoting.py) instead.
set -euo pipefail

missing=()
for shell in bash zsh fish; do
    command -v "$shell" >/dev/null 2>&1 || missing+=("$shell")
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "shells.sh: bash, zsh and fish are already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "shells.sh: missing ${missing[*]}; installing them needs root." >&2
    echo "shells.sh: run: sudo apt-get install -y --no-install-recommends zsh fish" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "shells.sh: missing ${missing[*]} and apt-get is not available; install them by hand" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# An empty lists directory means `apt-get install` cannot find any package yet.
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
    apt-get update
fi
if ! apt-get install -y --no-install-recommends zsh fish; then
    # Stale lists (a package version that has left the mirror) fail the install; refresh once.
    apt-get update
    apt-get install -y --no-install-recommends zsh fish
fi

for shell in bash zsh fish; do
    if ! command -v "$shell" >/dev/null 2>&1; then
        echo "shells.sh: $shell is still missing after the install" >&2
        exit 1
    fi
done
echo "shells.sh: installed ${missing[*]}"
