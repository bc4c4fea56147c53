"""Shell code for `preset use`, `preset clear` and `shell-init`.

Everything here is a pure function without I/O, except `parent_process_name`, which asks
psutil about the parent process.

Contract:

- Every value is quoted for its shell so that it round-trips exactly and executes nothing:
  `$(…)`, backticks, quotes, backslashes, newlines, `%`, `!`, unicode, the empty string and
  leading `-` all arrive as the same characters. Values may not contain NUL (no environment
  can hold one); that is a `UsageError`, as is any variable name that is not
  `[A-Za-z_][A-Za-z0-9_]*` or that is reserved (see `RESERVED_NAMES`). Names are validated
  before anything is rendered, so a bad preset produces no code at all, never half of it.
- What a shell has applied lives in that shell: `render_use` exports `AISWITCH_PRESET` (the
  preset's name) and `AISWITCH_PRESET_VARS` (the comma-separated names it set). The next
  `preset use` reads them from its caller's environment (`parse_applied_vars`) and passes them
  back as `previous_vars`, so the code it prints unsets whatever the previous preset set and
  the new one does not. One terminal's switch never touches another's.
- `render_shell_init` defines an `aiswitch` function that runs the real binary for
  `preset use` and `preset clear`, applies its output only when it exits 0, returns its exit
  status unchanged otherwise (stderr goes straight to the terminal), and passes every other
  command through untouched. The wrapper tells the binary it is being called by setting
  `AISWITCH_SHELL_WRAPPER` to the shell's name.
- Every statement ends with `;`, so the code still runs when its newlines turn into spaces:
  fish's `eval (aiswitch preset use x)` does that, and so does bash's unquoted `eval $(…)`
  (which also turns newlines inside values into spaces; quote it).
- `detect_shell` picks the shell: `--shell`, else the wrapper's variable, else the parent
  process's name when it is a known shell, else `$SHELL`, else bash.

Quoting rules, per shell (tests/test_shell_quoting.py runs real bash, zsh and fish on them):

- bash: POSIX single quotes, where nothing is special; a `'` is written as `\\'` between
  quoted runs. A newline stays literal inside the quotes, so the code is plain POSIX and also
  runs in sh and dash (which detection maps to bash).
- zsh: the same, except that a newline is written as `$'\\n'` between quoted runs, because
  zsh's CSH_JUNKIE_QUOTES option rejects a newline inside quotes. Runs are never empty, so
  RC_QUOTES (`''` inside quotes means `'`) cannot change the meaning either.
- fish: single quotes, where `\\` and `'` are the only specials (written `\\\\` and `\\'`). A
  newline is written as an unquoted `\\n` escape between quoted runs so that each command is
  one line: the fish wrapper reads the binary's output with a command substitution, which
  splits on newlines.
- PowerShell: single-quoted (verbatim) strings, where the quote characters are `'` and the
  typographic single quotes ‘ ’ ‚ ‛ (PowerShell treats all five alike); each is doubled.
  Note that on Windows an empty value removes the variable: that is the platform's rule.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from aiswitch.errors import UsageError

SHELLS: Final = ("bash", "zsh", "fish", "powershell")

# The variables through which a shell remembers what it applied (see the module docstring).
PRESET_NAME_VAR: Final = "AISWITCH_PRESET"
PRESET_VARS_VAR: Final = "AISWITCH_PRESET_VARS"
# Set by the shell-init wrapper, to its shell's name, on the binary it calls.
WRAPPER_VAR: Final = "AISWITCH_SHELL_WRAPPER"
# Comma, not colon: a colon list reads like a PATH, and fish splits variables whose
# names end in PATH on colons.
VARS_SEPARATOR: Final = ","

# Names a preset may not set or unset. The first three are aiswitch's own bookkeeping; the
# others are read-only in, or change the behaviour of, one of the supported shells
# (splitting, prompts, the search path, start-up files), so unsetting them on the next switch
# would break the terminal rather than reconfigure a program. Case matters: fish's and zsh's
# lowercase specials (`status`, `path`, `argv`, …) are distinct from ordinary uppercase names.
RESERVED_NAMES: Final = frozenset(
    {
        PRESET_NAME_VAR,
        PRESET_VARS_VAR,
        WRAPPER_VAR,
        # POSIX shells: splitting, search path, prompts, start-up files, identity.
        "IFS",
        "PATH",
        "HOME",
        "PWD",
        "OLDPWD",
        "SHELL",
        "SHLVL",
        "PS1",
        "PS2",
        "PS3",
        "PS4",
        "ENV",
        "BASH_ENV",
        "CDPATH",
        "PROMPT_COMMAND",
        "UID",
        "EUID",
        "PPID",
        "SHELLOPTS",
        "BASHOPTS",
        "ZDOTDIR",
        # zsh and fish specials (read-only or tied to other variables).
        "argv",
        "path",
        "cdpath",
        "status",
        "pipestatus",
        "history",
        "hostname",
        "version",
        "fish_pid",
        "last_pid",
        "umask",
        "FISH_VERSION",
        "_",
    }
)

_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Names a process may appear under, to the shell they are. `pwsh` is PowerShell 7's binary.
_SHELL_ALIASES: Final[Mapping[str, str]] = {
    "bash": "bash",
    "zsh": "zsh",
    "fish": "fish",
    "powershell": "powershell",
    "pwsh": "powershell",
}

# POSIX shells that are not among SHELLS but run bash's code unchanged (`export`, `unset -v`,
# single quotes). Only detection maps them; `--shell sh` stays an error, so a user who
# names a shell gets exactly that shell.
_POSIX_SHELLS: Final = frozenset({"sh", "dash", "ash", "ksh", "mksh", "busybox"})

# PowerShell's single-quote characters: ' and the four typographic single quotes.
_POWERSHELL_QUOTES: Final = frozenset("'\u2018\u2019\u201a\u201b")


def _base_name(name: str) -> str:
    """`/usr/bin/zsh` → `zsh`, `-bash` (a login shell) → `bash`, `pwsh.exe` → `pwsh`."""
    base = name.strip().replace("\\", "/").rsplit("/", 1)[-1].lstrip("-").lower()
    return base.removesuffix(".exe")


def normalize_shell(name: str) -> str:
    """The supported shell `name` denotes (a path, a login name or an alias), or UsageError."""
    shell = _SHELL_ALIASES.get(_base_name(name))
    if shell is None:
        raise UsageError(
            f"unknown shell {name!r}: expected one of {', '.join(SHELLS)}",
            hint="pass --shell bash|zsh|fish|powershell",
        )
    return shell


def _known_shell(name: str | None) -> str | None:
    """The shell a process name or `$SHELL` denotes, or None when it is not one we know."""
    if not name:
        return None
    base = _base_name(name)
    if base in _POSIX_SHELLS:
        return "bash"
    return _SHELL_ALIASES.get(base)


def detect_shell(
    explicit: str | None,
    parent_process_name: str | None,
    shell_env: str | None,
    *,
    wrapper: str | None = None,
) -> str:
    """The shell to print code for.

    `explicit` is `--shell` (unknown → UsageError, since the user asked for it by name);
    `wrapper` is `$AISWITCH_SHELL_WRAPPER`, set by the shell-init function to its own shell;
    then the parent process's name when it is a known shell; then `$SHELL`; then bash.
    Unknown wrapper, parent and `$SHELL` values fall through rather than fail: a program
    running us from a script is not the user's shell.
    """
    if explicit:
        return normalize_shell(explicit)
    for candidate in (wrapper, parent_process_name, shell_env):
        shell = _known_shell(candidate)
        if shell is not None:
            return shell
    return "bash"


def parent_process_name() -> str | None:
    """The name of this process's parent (the shell that ran us, usually), or None.

    psutil is imported here, not at module level, because only `preset use` needs it.
    """
    try:
        import psutil

        parent = psutil.Process(os.getpid()).parent()
        return parent.name() if parent is not None else None
    except Exception:
        # Detection is best effort: no parent, no permission, or an exotic platform all
        # fall through to $SHELL.
        return None


def validate_name(name: str) -> str:
    """`name` when it is a valid, unreserved variable name; UsageError otherwise."""
    if not _NAME_RE.fullmatch(name):
        raise UsageError(
            f"invalid variable name {name!r}: use letters, digits and _, not starting with a digit"
        )
    if name in RESERVED_NAMES:
        raise UsageError(
            f"variable name {name!r} is reserved: setting or unsetting it would change the "
            "shell itself"
        )
    return name


def _validate_value(name: str, value: str) -> str:
    if "\0" in value:
        raise UsageError(
            f"the value of {name} contains a NUL character, which no environment can hold"
        )
    return value


def parse_applied_vars(value: str | None) -> tuple[str, ...]:
    """The names in `$AISWITCH_PRESET_VARS`, validated (empty when unset or empty).

    A name that fails validation means the variable was not written by us; refusing is
    safer than passing an arbitrary string on to `unset`.
    """
    if not value:
        return ()
    names: list[str] = []
    for name in value.split(VARS_SEPARATOR):
        name = name.strip()
        if not name:
            continue
        try:
            validate_name(name)
        except UsageError as error:
            raise UsageError(
                f"${PRESET_VARS_VAR} holds {name!r}, which is not a variable aiswitch set",
                hint=f"run `unset {PRESET_VARS_VAR}` and apply the preset again",
            ) from error
        if name not in names:
            names.append(name)
    return tuple(names)


# --- quoting -------------------------------------------------------------------------------


def quote_posix(value: str) -> str:
    """`value` as one bash/zsh word: single-quoted runs joined by `\\'`."""
    if value == "":
        return "''"
    return "\\'".join(f"'{run}'" if run else "" for run in value.split("'"))


def quote_zsh(value: str) -> str:
    """`value` as one zsh word on one line: POSIX-quoted runs joined by `$'\\n'`.

    zsh's CSH_JUNKIE_QUOTES option makes a newline inside quotes a syntax error; `$'\\n'`
    (ANSI-C quoting, always available in zsh) is unaffected by it.
    """
    return "$'\\n'".join(quote_posix(run) for run in value.split("\n"))


def _quote_fish_run(run: str) -> str:
    return "'" + run.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_fish(value: str) -> str:
    """`value` as one fish word on one line: quoted runs joined by unquoted `\\n` escapes."""
    return "\\n".join(_quote_fish_run(run) for run in value.split("\n"))


def quote_powershell(value: str) -> str:
    """`value` as a PowerShell verbatim string: every single-quote character doubled."""
    body = "".join(ch * 2 if ch in _POWERSHELL_QUOTES else ch for ch in value)
    return f"'{body}'"


def quote(shell: str, value: str) -> str:
    """`value` quoted for `shell` (one of SHELLS)."""
    shell = normalize_shell(shell)
    if shell == "fish":
        return quote_fish(value)
    if shell == "powershell":
        return quote_powershell(value)
    if shell == "zsh":
        return quote_zsh(value)
    return quote_posix(value)


# --- one statement per shell ---------------------------------------------------------------


def _set_line(shell: str, name: str, value: str) -> str:
    if shell == "fish":
        # fish 3.6 stops reading options at the name, so `--` is belt and braces: a value
        # starting with `-` stays a value even if a version parses options further on.
        return f"set -gx -- {name} {quote_fish(value)}"
    if shell == "powershell":
        return f"$env:{name} = {quote_powershell(value)}"
    return f"export {name}={quote(shell, value)}"


def _unset_line(shell: str, name: str) -> str:
    if shell == "fish":
        # Only the global: a universal variable of the same name is the user's own setting.
        # Guarded, because `set -e` of a missing variable fails (status 4), and the last
        # statement's status is what `preset clear` reports through the wrapper.
        return f"if set -q -g {name}; set -e -g {name}; end"
    if shell == "powershell":
        return f"Remove-Item Env:{name} -ErrorAction SilentlyContinue"
    # -v: plain `unset` in bash removes a function of that name when no variable exists.
    return f"unset -v {name}"


def _join(lines: Sequence[str]) -> str:
    # Each statement ends in `;` as well as a newline, so that code whose newlines became
    # spaces still runs statement by statement: fish's `eval (aiswitch preset use x)` joins
    # the lines of its command substitution with spaces (the old tool's fish code broke
    # exactly there, on presets with several variables).
    return "".join(f"{line};\n" for line in lines)


def _check_vars(set_vars: Mapping[str, str], previous_vars: Sequence[str]) -> list[str]:
    for name, value in set_vars.items():
        validate_name(name)
        _validate_value(name, value)
    unsets: list[str] = []
    for name in previous_vars:
        validate_name(name)
        if name not in set_vars and name not in unsets:
            unsets.append(name)
    return unsets


def render_use(
    shell: str, preset_name: str, set_vars: Mapping[str, str], previous_vars: Sequence[str]
) -> str:
    """Code that applies a preset in `shell`, ending with a newline.

    Unsets each of `previous_vars` the preset does not set, sets every variable in
    `set_vars` (in its order), then exports `AISWITCH_PRESET` and `AISWITCH_PRESET_VARS`.
    Everything is validated first; on UsageError nothing has been rendered.
    """
    shell = normalize_shell(shell)
    _validate_value(PRESET_NAME_VAR, preset_name)
    unsets = _check_vars(set_vars, previous_vars)
    lines = [_unset_line(shell, name) for name in unsets]
    lines += [_set_line(shell, name, value) for name, value in set_vars.items()]
    lines.append(_set_line(shell, PRESET_NAME_VAR, preset_name))
    lines.append(_set_line(shell, PRESET_VARS_VAR, VARS_SEPARATOR.join(set_vars)))
    return _join(lines)


def render_clear(shell: str, previous_vars: Iterable[str]) -> str:
    """Code that unsets `previous_vars` and aiswitch's own two variables, ending with a newline."""
    shell = normalize_shell(shell)
    unsets = _check_vars({}, list(previous_vars))
    lines = [_unset_line(shell, name) for name in [*unsets, PRESET_NAME_VAR, PRESET_VARS_VAR]]
    return _join(lines)


# --- shell-init ----------------------------------------------------------------------------

# bash and zsh share one body: `function NAME {` (not `NAME() {`) so that an alias called
# aiswitch cannot be expanded in the definition; `command aiswitch` skips the function and
# runs the binary. The output is captured into a variable declared apart from its
# assignment, because `local x=$(…)` would replace the binary's exit status with local's.
# Help requests are passed through, since their output is text, not code.
_POSIX_INIT: Final = """\
# aiswitch shell integration for {shell}: `aiswitch preset use NAME` applies the preset
# to this shell; every other command runs the aiswitch program unchanged.
# Install: eval "$(aiswitch shell-init {shell})"
function aiswitch {{
    if [ "$#" -ge 2 ] && [ "$1" = preset ] && {{ [ "$2" = use ] || [ "$2" = clear ]; }}; then
        local __aiswitch_arg
        for __aiswitch_arg in "$@"; do
            case "$__aiswitch_arg" in
                -h|--help) command aiswitch "$@"; return ;;
            esac
        done
        local __aiswitch_code __aiswitch_status
        __aiswitch_code="$({wrapper_var}={shell} command aiswitch "$@")"
        __aiswitch_status=$?
        if [ "$__aiswitch_status" -ne 0 ]; then
            return "$__aiswitch_status"
        fi
        eval "$__aiswitch_code"
        return
    fi
    command aiswitch "$@"
}}
"""

# fish splits a command substitution on newlines; render_use's fish code is one command per
# line for that reason, and the lines are joined back before `source` runs them in this
# shell. `set` keeps the status of its command substitution.
_FISH_INIT: Final = """\
# aiswitch shell integration for fish: `aiswitch preset use NAME` applies the preset
# to this shell; every other command runs the aiswitch program unchanged.
# Install: aiswitch shell-init fish | source
function aiswitch --description 'aiswitch; `preset use` and `preset clear` apply to this shell'
    if test (count $argv) -ge 2; and test "$argv[1]" = preset; and contains -- "$argv[2]" use clear
        if contains -- -h $argv; or contains -- --help $argv
            command aiswitch $argv
            return
        end
        set -l __aiswitch_code ({wrapper_var}=fish command aiswitch $argv)
        set -l __aiswitch_status $status
        if test $__aiswitch_status -ne 0
            return $__aiswitch_status
        end
        string join \\n -- $__aiswitch_code | source
        return
    end
    command aiswitch $argv
end
"""

# PowerShell: the application is looked up explicitly (a function named aiswitch would
# otherwise call itself); its output lines are joined and applied only on exit code 0.
_POWERSHELL_INIT: Final = """\
# aiswitch shell integration for PowerShell: `aiswitch preset use NAME` applies the preset
# to this session; every other command runs the aiswitch program unchanged.
# Install: aiswitch shell-init powershell | Out-String | Invoke-Expression
function aiswitch {{
    $exe = Get-Command -Name aiswitch -CommandType Application -ErrorAction Stop |
        Select-Object -First 1
    $isUse = $args.Count -ge 2 -and $args[0] -eq 'preset' -and
        ($args[1] -eq 'use' -or $args[1] -eq 'clear') -and
        -not ($args -contains '-h' -or $args -contains '--help')
    if (-not $isUse) {{
        & $exe @args
        $global:LASTEXITCODE = $LASTEXITCODE
        return
    }}
    $previous = $env:{wrapper_var}
    $env:{wrapper_var} = 'powershell'
    try {{
        $code = & $exe @args | Out-String
        $status = $LASTEXITCODE
    }} finally {{
        if ($null -eq $previous) {{
            Remove-Item Env:{wrapper_var} -ErrorAction SilentlyContinue
        }} else {{
            $env:{wrapper_var} = $previous
        }}
    }}
    $global:LASTEXITCODE = $status
    if ($status -ne 0) {{
        return
    }}
    Invoke-Expression $code
}}
"""


def render_shell_init(shell: str) -> str:
    """The `aiswitch` wrapper function for `shell` (see the module docstring)."""
    shell = normalize_shell(shell)
    if shell == "fish":
        return _FISH_INIT.format(wrapper_var=WRAPPER_VAR)
    if shell == "powershell":
        return _POWERSHELL_INIT.format(wrapper_var=WRAPPER_VAR)
    return _POSIX_INIT.format(shell=shell, wrapper_var=WRAPPER_VAR)
