"""The code `preset use`, `preset clear` and `shell-init` print, run in real bash, zsh and fish.

Nothing here compares generated code with expected strings: each test evaluates the code in
the real shell (installed by scripts/setup/shells.sh) and reads the result back through
`env -0`, which also proves the variables are exported to children. PowerShell is not in
Debian's repositories, so its code is read by a small interpreter of PowerShell's own
verbatim-string rules instead.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from aiswitch.errors import UsageError
from aiswitch.presets.shells import (
    PRESET_NAME_VAR,
    PRESET_VARS_VAR,
    SHELLS,
    WRAPPER_VAR,
    detect_shell,
    normalize_shell,
    parse_applied_vars,
    render_clear,
    render_shell_init,
    render_use,
)

# A shell that starts, evaluates a few lines and exits takes milliseconds; this is the
# ceiling for a loaded 2-core CI machine, not an expected duration.
SHELL_TIMEOUT = 20.0

REAL_SHELLS = ("bash", "zsh", "fish")
REPO_ROOT = Path(__file__).resolve().parents[1]
MARKER = "pwned-XYZ"


def nasty_values(marker: Path) -> dict[str, str]:
    """Values that broke, or could break, a naive quoter; the keys are the variable names."""
    return {
        "CMD_SUBST": f"$(touch {marker})",
        "BACKTICKS": f"`touch {marker}`",
        "FISH_SUBST": f"(touch {marker})",
        "BREAK_OUT_SINGLE": f"'; touch {marker}; '",
        "BREAK_OUT_DOUBLE": f'"; touch {marker}; "',
        "BREAK_OUT_ESCAPED": f"\\'; touch {marker}; #",
        "SINGLE_QUOTE": "'",
        "TWO_SINGLE_QUOTES": "''",
        "QUOTES_INSIDE": "a''b'c\"d",
        "POSIX_ESCAPE_ITSELF": "'\\''",
        "DOUBLE_QUOTE": '"',
        "BACKSLASH": "\\",
        "TRAILING_BACKSLASH": "abc\\",
        "BACKSLASH_N": "\\n\\t\\x41",
        "NEWLINE": "first\nsecond",
        "BLANK_LINES": "\n\nmiddle\n\n",
        "TRAILING_NEWLINE": "value\n",
        "CARRIAGE_RETURN_TAB": "a\rb\tc",
        "SPACES": "  two  leading, two trailing  ",
        "PERCENT": "%s %d %% %n",
        "BANG": "!! !$ !-1 hello!",
        "DOLLARS": "$HOME ${HOME} $1 $$ $status",
        "GLOB_AND_BRACES": "* ? [a] {a,b} ~ ~root",
        "SEPARATORS": "a;b|c&d>e<f #g",
        "UNICODE": "héllo – 日本語 🚀 ‘smart’ “quotes”",
        "EMPTY": "",
        "LEADING_DASH": "-n",
        "DOUBLE_DASH": "--",
        "LEADING_DASH_E": "-e -x",
        "lower_case_name": "http://proxy.local:3128",
        "_UNDERSCORE1": "ok",
    }


def shell_command(shell: str, script: str) -> list[str]:
    """Run `script` in `shell` without reading any user configuration."""
    if shell == "bash":
        return ["bash", "--norc", "--noprofile", "-c", script]
    if shell == "zsh":
        return ["zsh", "-f", "-c", script]
    return ["fish", "--no-config", "-c", script]


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A small, known environment: nothing inherited from the test runner leaks in."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    env.update(extra)
    return env


def run_shell(
    shell: str, script: str, env: Mapping[str, str]
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        shell_command(shell, script),
        env=dict(env),
        capture_output=True,
        timeout=SHELL_TIMEOUT,
        check=False,
    )


def parse_env0(output: bytes) -> dict[str, str]:
    """`env -0` output as a dict (the only format that survives newlines in values)."""
    result: dict[str, str] = {}
    for entry in output.split(b"\0"):
        if entry:
            name, _, value = entry.decode("utf-8", "surrogateescape").partition("=")
            result[name] = value
    return result


def eval_script(shell: str) -> str:
    """How a user applies `preset use` output in each shell, reading it from $CODE_FILE."""
    if shell == "fish":
        return "source $CODE_FILE"
    return 'eval "$(cat "$CODE_FILE")"'


def apply_in_shell(
    shell: str, tmp_path: Path, codes: list[str], env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Evaluate each code in turn in one `shell` process; return the exported environment."""
    script_lines = []
    for index, code in enumerate(codes):
        code_file = tmp_path / f"code-{shell}-{index}"
        code_file.write_text(code, encoding="utf-8")
        script_lines.append(eval_script(shell).replace("$CODE_FILE", str(code_file)))
    script_lines.append("env -0")
    separator = "; and " if shell == "fish" else " && "
    result = run_shell(shell, separator.join(script_lines), env or base_env(tmp_path))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b"", result.stderr.decode()
    return parse_env0(result.stdout)


# --- values round-trip and execute nothing ----------------------------------------------------


@pytest.mark.shells
@pytest.mark.parametrize("shell", REAL_SHELLS)
def test_every_nasty_value_round_trips_exactly_and_runs_nothing(shell: str, tmp_path: Path) -> None:
    marker = tmp_path / MARKER
    values = nasty_values(marker)

    env = apply_in_shell(shell, tmp_path, [render_use(shell, "nasty", values, [])])

    assert {name: env.get(name) for name in values} == values
    assert not marker.exists()


@pytest.mark.shells
@pytest.mark.parametrize("shell", REAL_SHELLS)
def test_a_value_survives_each_nasty_value_alone(shell: str, tmp_path: Path) -> None:
    # One variable per preset, so a quoting error in one value cannot hide behind another.
    marker = tmp_path / MARKER
    for name, value in nasty_values(marker).items():
        env = apply_in_shell(shell, tmp_path, [render_use(shell, "one", {name: value}, [])])
        assert env.get(name) == value, name
    assert not marker.exists()


@pytest.mark.shells
def test_zsh_options_that_change_quoting_or_expansion_do_not_change_the_values(
    tmp_path: Path,
) -> None:
    marker = tmp_path / MARKER
    values = nasty_values(marker)
    code_file = tmp_path / "code"
    code_file.write_text(render_use("zsh", "nasty", values, ["GONE"]), encoding="utf-8")
    options = (
        "setopt RC_QUOTES SH_WORD_SPLIT GLOB_SUBST KSH_ARRAYS NO_UNSET ERR_EXIT "
        "WARN_CREATE_GLOBAL POSIX_BUILTINS EXTENDED_GLOB CSH_JUNKIE_QUOTES BRACE_CCL"
    )
    script = f'{options}; GONE=x; eval "$(cat {code_file})"; env -0'

    result = run_shell("zsh", script, base_env(tmp_path))

    assert result.returncode == 0, result.stderr.decode()
    env = parse_env0(result.stdout)
    assert {name: env.get(name) for name in values} == values
    assert not marker.exists()


@pytest.mark.shells
def test_bash_strict_mode_and_posix_mode_do_not_change_the_values(tmp_path: Path) -> None:
    marker = tmp_path / MARKER
    values = nasty_values(marker)
    code_file = tmp_path / "code"
    code_file.write_text(render_use("bash", "nasty", values, ["GONE"]), encoding="utf-8")
    script = (
        "set -euo pipefail -o posix; shopt -s extglob nullglob failglob; "
        f'GONE=x; eval "$(cat {code_file})"; env -0'
    )

    result = run_shell("bash", script, base_env(tmp_path))

    assert result.returncode == 0, result.stderr.decode()
    env = parse_env0(result.stdout)
    assert {name: env.get(name) for name in values} == values
    assert not marker.exists()


@pytest.mark.shells
def test_fish_reads_non_ascii_values_back_unchanged_in_the_c_locale(tmp_path: Path) -> None:
    values = {"UNICODE": "héllo – 日本語 🚀", "QUOTE": "it's"}
    env = apply_in_shell(
        "fish",
        tmp_path,
        [render_use("fish", "c-locale", values, [])],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LC_ALL": "C"},
    )
    assert {name: env.get(name) for name in values} == values


# --- switching -------------------------------------------------------------------------------


@pytest.mark.shells
@pytest.mark.parametrize("shell", REAL_SHELLS)
def test_switching_unsets_what_the_previous_preset_set_and_keeps_the_rest(
    shell: str, tmp_path: Path
) -> None:
    first = render_use(shell, "kimi", {"KEY_A": "a", "SHARED": "one", "ONLY_FIRST": "x"}, [])
    # What the binary does on the next `preset use`: read the list from the shell's env.
    applied = parse_applied_vars("KEY_A,SHARED,ONLY_FIRST")
    second = render_use(shell, "glm", {"SHARED": "two", "ONLY_SECOND": "y"}, applied)

    env = apply_in_shell(shell, tmp_path, [first, second], base_env(tmp_path, UNRELATED="keep"))

    assert "KEY_A" not in env
    assert "ONLY_FIRST" not in env
    assert env["SHARED"] == "two"
    assert env["ONLY_SECOND"] == "y"
    assert env["UNRELATED"] == "keep"
    assert env[PRESET_NAME_VAR] == "glm"
    assert parse_applied_vars(env[PRESET_VARS_VAR]) == ("SHARED", "ONLY_SECOND")


@pytest.mark.shells
@pytest.mark.parametrize("shell", REAL_SHELLS)
def test_an_unset_variable_is_gone_from_the_shell_itself_not_only_from_children(
    shell: str, tmp_path: Path
) -> None:
    code_file = tmp_path / "code"
    code_file.write_text(render_use(shell, "p", {"NEW": "v"}, ["OLD"]), encoding="utf-8")
    if shell == "fish":
        script = f"set -gx OLD x; source {code_file}; set -q OLD; and echo present; or echo gone"
    else:
        script = (
            f'export OLD=x; eval "$(cat {code_file})"; '
            'if [ -n "${OLD+set}" ]; then echo present; else echo gone; fi'
        )

    result = run_shell(shell, script, base_env(tmp_path))

    assert result.stdout.decode().strip() == "gone", result.stderr.decode()


@pytest.mark.shells
@pytest.mark.parametrize("shell", REAL_SHELLS)
def test_clear_removes_the_preset_and_the_bookkeeping_variables(shell: str, tmp_path: Path) -> None:
    use = render_use(shell, "kimi", {"A_KEY": "secret", "B_URL": "http://x"}, [])
    clear = render_clear(shell, ["A_KEY", "B_URL"])

    env = apply_in_shell(shell, tmp_path, [use, clear], base_env(tmp_path, OTHER="stays"))

    for name in ("A_KEY", "B_URL", PRESET_NAME_VAR, PRESET_VARS_VAR):
        assert name not in env
    assert env["OTHER"] == "stays"


@pytest.mark.shells
@pytest.mark.parametrize("shell", REAL_SHELLS)
def test_clearing_a_shell_that_never_applied_a_preset_succeeds_quietly(
    shell: str, tmp_path: Path
) -> None:
    env = apply_in_shell(shell, tmp_path, [render_clear(shell, ["NEVER_SET"])])
    assert PRESET_NAME_VAR not in env


@pytest.mark.shells
@pytest.mark.parametrize("shell", REAL_SHELLS)
def test_the_preset_name_and_variable_list_are_exported_to_children(
    shell: str, tmp_path: Path
) -> None:
    code = render_use(
        shell, "it's kimi", {"ANTHROPIC_BASE_URL": "u", "ANTHROPIC_AUTH_TOKEN": "t"}, []
    )
    env = apply_in_shell(shell, tmp_path, [code])
    assert env[PRESET_NAME_VAR] == "it's kimi"
    assert parse_applied_vars(env[PRESET_VARS_VAR]) == (
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_AUTH_TOKEN",
    )


@pytest.mark.shells
@pytest.mark.parametrize("shell", REAL_SHELLS)
def test_a_preset_without_variables_still_records_its_name(shell: str, tmp_path: Path) -> None:
    env = apply_in_shell(shell, tmp_path, [render_use(shell, "empty", {}, ["OLD_VAR"])])
    assert env[PRESET_NAME_VAR] == "empty"
    assert parse_applied_vars(env[PRESET_VARS_VAR]) == ()


# --- fish, where the old tool broke ----------------------------------------------------------


@pytest.mark.shells
def test_fish_applies_a_multi_variable_preset_through_eval_of_a_command_substitution(
    tmp_path: Path,
) -> None:
    # `eval (cmd)` joins the lines of cmd's output with spaces; the old tool's fish code
    # turned into one broken `set` there.
    marker = tmp_path / MARKER
    values = {"A": "1", "B": "two words", "C": "multi\nline", "D": f"$(touch {marker})"}
    code_file = tmp_path / "code"
    code_file.write_text(render_use("fish", "multi", values, []), encoding="utf-8")

    result = run_shell("fish", f"eval (cat {code_file}); and env -0", base_env(tmp_path))

    assert result.returncode == 0, result.stderr.decode()
    env = parse_env0(result.stdout)
    assert {name: env.get(name) for name in values} == values
    assert not marker.exists()


@pytest.mark.shells
def test_fish_applies_output_piped_into_source(tmp_path: Path) -> None:
    values = {"A": "1", "B": "it's", "C": "x\ny"}
    code_file = tmp_path / "code"
    code_file.write_text(render_use("fish", "multi", values, []), encoding="utf-8")

    result = run_shell("fish", f"cat {code_file} | source; and env -0", base_env(tmp_path))

    env = parse_env0(result.stdout)
    assert {name: env.get(name) for name in values} == values


@pytest.mark.shells
def test_bash_applies_a_multi_variable_preset_even_through_an_unquoted_eval(
    tmp_path: Path,
) -> None:
    # `eval $(…)` without quotes is a common mistake; it turns newlines into spaces.
    values = {"A": "1", "B": "2", "C": "3"}
    code_file = tmp_path / "code"
    code_file.write_text(render_use("bash", "multi", values, []), encoding="utf-8")

    result = run_shell("bash", f"eval $(cat {code_file}) && env -0", base_env(tmp_path))

    env = parse_env0(result.stdout)
    assert {name: env.get(name) for name in values} == values


# --- the shell-init wrapper ------------------------------------------------------------------

FAKE_AISWITCH = """\
#!{python}
# A stand-in for the aiswitch binary: just enough of `preset use` and `preset clear`.
import os, sys
sys.path.insert(0, {repo!r})
from aiswitch.presets.shells import parse_applied_vars, render_clear, render_use

with open(os.environ["FAKE_LOG"], "a", encoding="utf-8") as log:
    log.write(repr((sys.argv[1:], os.environ.get({wrapper_var!r}))) + "\\n")
args = sys.argv[1:]
shell = os.environ.get({wrapper_var!r}, "bash")
previous = parse_applied_vars(os.environ.get("AISWITCH_PRESET_VARS"))
presets = {{
    "good": {{"PROVIDER_KEY": "sk-good $(touch {marker})", "PROVIDER_URL": "https://good"}},
    "other": {{"PROVIDER_URL": "https://other", "OTHER_ONLY": "it's\\n  two lines\\\\"}},
}}
if args[:2] == ["preset", "use"] and "--help" in args:
    print("Usage: aiswitch preset use NAME")
    print("touch {marker}")
    sys.exit(0)
if args[:2] == ["preset", "use"] and len(args) == 3 and args[2] in presets:
    sys.stdout.write(render_use(shell, args[2], presets[args[2]], previous))
    sys.exit(0)
if args[:2] == ["preset", "use"]:
    sys.stderr.write("aiswitch: unknown preset 'bad'\\n")
    sys.exit(3)
if args[:2] == ["preset", "clear"]:
    sys.stdout.write(render_clear(shell, previous))
    sys.exit(0)
for arg in args:
    print(arg)
sys.exit(7)
"""


@pytest.fixture
def fake_aiswitch(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH finds the fake aiswitch first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "aiswitch"
    fake.write_text(
        FAKE_AISWITCH.format(
            python=sys.executable,
            repo=str(REPO_ROOT),
            wrapper_var=WRAPPER_VAR,
            marker=tmp_path / MARKER,
        ),
        encoding="utf-8",
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return base_env(
        tmp_path,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        FAKE_LOG=str(tmp_path / "fake.log"),
    )


def with_wrapper(shell: str, tmp_path: Path, body: list[str]) -> str:
    """A script that installs `shell-init` the documented way, then runs `body`."""
    init_file = tmp_path / f"init.{shell}"
    init_file.write_text(render_shell_init(shell), encoding="utf-8")
    install = f"cat {init_file} | source" if shell == "fish" else f'eval "$(cat {init_file})"'
    return "\n".join([install, *body])


def status_line(shell: str, label: str) -> str:
    return f"echo {label}=$status" if shell == "fish" else f"echo {label}=$?"


def dump_env(shell: str) -> str:
    # The statuses go to stdout before this; the environment goes to a file to parse apart.
    return "env -0 > $ENV_DUMP" if shell == "fish" else 'env -0 > "$ENV_DUMP"'


@pytest.mark.shells
@pytest.mark.parametrize("shell", REAL_SHELLS)
def test_the_wrapper_applies_a_preset_without_eval_and_switches_cleanly(
    shell: str, tmp_path: Path, fake_aiswitch: dict[str, str]
) -> None:
    script = with_wrapper(
        shell,
        tmp_path,
        [
            "aiswitch preset use good",
            status_line(shell, "first"),
            "aiswitch preset use other",
            status_line(shell, "second"),
            # The captured code holds secrets; it must not outlive the function call.
            "set -q __aiswitch_code; and echo leaked"
            if shell == "fish"
            else '[ -n "${__aiswitch_code+set}" ] && echo leaked',
            dump_env(shell),
        ],
    )
    dump = tmp_path / "env.dump"

    result = run_shell(shell, script, {**fake_aiswitch, "ENV_DUMP": str(dump)})

    assert result.stdout.decode().split() == ["first=0", "second=0"], result.stderr.decode()
    env = parse_env0(dump.read_bytes())
    assert env["PROVIDER_URL"] == "https://other"
    assert env["OTHER_ONLY"] == "it's\n  two lines\\"
    assert "PROVIDER_KEY" not in env
    assert env[PRESET_NAME_VAR] == "other"
    # The wrapper marks only the binary's environment, never the shell's.
    assert WRAPPER_VAR not in env
    calls = Path(fake_aiswitch["FAKE_LOG"]).read_text(encoding="utf-8").splitlines()
    assert calls == [
        repr((["preset", "use", "good"], shell)),
        repr((["preset", "use", "other"], shell)),
    ]
    assert not (tmp_path / MARKER).exists()


@pytest.mark.shells
@pytest.mark.parametrize("shell", REAL_SHELLS)
def test_the_wrapper_reports_a_failed_switch_and_changes_nothing(
    shell: str, tmp_path: Path, fake_aiswitch: dict[str, str]
) -> None:
    script = with_wrapper(
        shell,
        tmp_path,
        [
            "aiswitch preset use good",
            "aiswitch preset use bad",
            status_line(shell, "failed"),
            dump_env(shell),
        ],
    )
    dump = tmp_path / "env.dump"

    result = run_shell(shell, script, {**fake_aiswitch, "ENV_DUMP": str(dump)})

    assert result.stdout.decode().split() == ["failed=3"]
    assert result.stderr.decode() == "aiswitch: unknown preset 'bad'\n"
    env = parse_env0(dump.read_bytes())
    assert env[PRESET_NAME_VAR] == "good"
    assert env["PROVIDER_URL"] == "https://good"
    assert env["PROVIDER_KEY"] == f"sk-good $(touch {tmp_path / MARKER})"


@pytest.mark.shells
@pytest.mark.parametrize("shell", REAL_SHELLS)
def test_the_wrapper_applies_preset_clear(
    shell: str, tmp_path: Path, fake_aiswitch: dict[str, str]
) -> None:
    script = with_wrapper(
        shell,
        tmp_path,
        [
            "aiswitch preset use good",
            "aiswitch preset clear",
            status_line(shell, "cleared"),
            dump_env(shell),
        ],
    )
    dump = tmp_path / "env.dump"

    result = run_shell(shell, script, {**fake_aiswitch, "ENV_DUMP": str(dump)})

    assert result.stdout.decode().split() == ["cleared=0"], result.stderr.decode()
    env = parse_env0(dump.read_bytes())
    for name in ("PROVIDER_KEY", "PROVIDER_URL", PRESET_NAME_VAR, PRESET_VARS_VAR):
        assert name not in env


@pytest.mark.shells
@pytest.mark.parametrize("shell", REAL_SHELLS)
def test_the_wrapper_passes_other_commands_through_with_their_arguments_and_exit_code(
    shell: str, tmp_path: Path, fake_aiswitch: dict[str, str]
) -> None:
    marker = tmp_path / MARKER
    script = with_wrapper(
        shell,
        tmp_path,
        [
            f"aiswitch other 'two words' '$(touch {marker})' ''",
            status_line(shell, "status"),
        ],
    )

    result = run_shell(shell, script, fake_aiswitch)

    assert result.stdout.decode() == f"other\ntwo words\n$(touch {marker})\n\nstatus=7\n"
    assert not marker.exists()
    calls = Path(fake_aiswitch["FAKE_LOG"]).read_text(encoding="utf-8").splitlines()
    assert calls == [repr((["other", "two words", f"$(touch {marker})", ""], None))]


@pytest.mark.shells
@pytest.mark.parametrize("shell", REAL_SHELLS)
def test_the_wrapper_prints_help_for_preset_use_instead_of_evaluating_it(
    shell: str, tmp_path: Path, fake_aiswitch: dict[str, str]
) -> None:
    script = with_wrapper(
        shell, tmp_path, ["aiswitch preset use --help", status_line(shell, "status")]
    )

    result = run_shell(shell, script, fake_aiswitch)

    assert "Usage: aiswitch preset use NAME" in result.stdout.decode()
    assert result.stdout.decode().endswith("status=0\n")
    assert not (tmp_path / MARKER).exists()


@pytest.mark.shells
@pytest.mark.parametrize("shell", REAL_SHELLS)
def test_the_wrapper_returns_127_when_the_binary_is_missing(shell: str, tmp_path: Path) -> None:
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    shell_dir = str(Path(shutil.which(shell) or "/usr/bin").parent)
    env = base_env(tmp_path, PATH=f"{empty_bin}{os.pathsep}{shell_dir}")
    script = with_wrapper(shell, tmp_path, ["aiswitch preset use good", status_line(shell, "s")])

    result = run_shell(shell, script, env)

    assert result.stdout.decode().split() == ["s=127"]


@pytest.mark.shells
def test_the_zsh_wrapper_works_under_options_that_change_quoting_and_expansion(
    tmp_path: Path, fake_aiswitch: dict[str, str]
) -> None:
    options = (
        "setopt NO_UNSET KSH_ARRAYS SH_WORD_SPLIT RC_QUOTES CSH_JUNKIE_QUOTES "
        "WARN_CREATE_GLOBAL GLOB_SUBST POSIX_BUILTINS"
    )
    script = with_wrapper(
        "zsh",
        tmp_path,
        [
            options,
            "aiswitch preset use good",
            "aiswitch preset use other",
            "aiswitch preset use bad",
            status_line("zsh", "failed"),
            dump_env("zsh"),
        ],
    )
    dump = tmp_path / "env.dump"

    result = run_shell("zsh", script, {**fake_aiswitch, "ENV_DUMP": str(dump)})

    assert result.stdout.decode().split() == ["failed=3"]
    assert result.stderr.decode() == "aiswitch: unknown preset 'bad'\n"
    env = parse_env0(dump.read_bytes())
    assert env["OTHER_ONLY"] == "it's\n  two lines\\"
    assert "PROVIDER_KEY" not in env


@pytest.mark.shells
def test_the_bash_wrapper_works_under_set_u(tmp_path: Path, fake_aiswitch: dict[str, str]) -> None:
    script = with_wrapper(
        "bash", tmp_path, ["set -u", "aiswitch preset use good", 'echo "url=$PROVIDER_URL"']
    )
    result = run_shell("bash", script, fake_aiswitch)
    assert result.stdout.decode() == "url=https://good\n", result.stderr.decode()


# --- PowerShell, by its quoting rules ----------------------------------------------------------

# The single-quote characters of the PowerShell language specification (§2.3.5.2,
# single-quote-character): the ASCII apostrophe and four typographic single quotes.
PS_QUOTES = frozenset("'\u2018\u2019\u201a\u201b")


def read_ps_verbatim_string(text: str, start: int) -> tuple[str, int]:
    """Parse a verbatim-string-literal at `start`, as PowerShell's tokenizer does.

    Any single-quote character opens it; inside, nothing is special except a
    single-quote character: followed by another one it stands for that second character,
    otherwise it closes the string.
    """
    assert text[start] in PS_QUOTES, f"expected a verbatim string at {text[start:]!r}"
    chars: list[str] = []
    index = start + 1
    while True:
        if index >= len(text):
            raise AssertionError("unterminated verbatim string")
        char = text[index]
        if char in PS_QUOTES:
            if index + 1 < len(text) and text[index + 1] in PS_QUOTES:
                chars.append(text[index + 1])
                index += 2
                continue
            return "".join(chars), index + 1
        chars.append(char)
        index += 1


def run_powershell_subset(code: str, env: dict[str, str]) -> dict[str, str]:
    """Execute the only two statements `preset use` may print; anything else fails."""
    set_re = re.compile(r"\$env:([A-Za-z_][A-Za-z0-9_]*) = ")
    remove_re = re.compile(
        r"Remove-Item Env:([A-Za-z_][A-Za-z0-9_]*) -ErrorAction SilentlyContinue"
    )
    env = dict(env)
    index = 0
    while index < len(code):
        if code[index] in ";\n":
            index += 1
            continue
        if match := set_re.match(code, index):
            value, index = read_ps_verbatim_string(code, match.end())
            env[match.group(1)] = value
        elif match := remove_re.match(code, index):
            env.pop(match.group(1), None)
            index = match.end()
        else:
            raise AssertionError(f"not a statement preset use may print: {code[index:]!r}")
        assert index == len(code) or code[index] in ";\n", f"junk after a statement: {code!r}"
    return env


def test_powershell_values_round_trip_by_the_language_quoting_rules(tmp_path: Path) -> None:
    values = nasty_values(tmp_path / MARKER)
    values["SMART_QUOTES"] = "‘a’ ‚b‛ '‘’‚‛ ‘’"
    values["SUBEXPRESSION"] = "$(Remove-Item -Recurse C:\\) $env:HOME @args `n"

    env = run_powershell_subset(render_use("powershell", "nasty", values, []), {})

    assert {name: env[name] for name in values} == values
    assert env[PRESET_NAME_VAR] == "nasty"


def test_powershell_switching_removes_the_previous_variables() -> None:
    before = {"OLD_KEY": "x", "KEEP": "k", "SHARED": "one"}
    code = render_use("powershell", "glm", {"SHARED": "two"}, ["OLD_KEY", "SHARED"])

    env = run_powershell_subset(code, before)

    assert env == {
        "KEEP": "k",
        "SHARED": "two",
        PRESET_NAME_VAR: "glm",
        PRESET_VARS_VAR: "SHARED",
    }
    cleared = run_powershell_subset(render_clear("powershell", ["SHARED"]), env)
    assert cleared == {"KEEP": "k"}


def test_the_powershell_reader_itself_rejects_a_quote_that_is_not_doubled() -> None:
    # Guards the test above: an undoubled smart quote must end the string early.
    with pytest.raises(AssertionError):
        run_powershell_subset("$env:A = 'it\u2019s';\n", {})


# --- names, shells and detection (pure) --------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "1ABC", "A-B", "A B", "A;B", "$(x)", "A=B", "ÄPFEL", "a\nb", "PATH", "IFS"]
)
def test_an_invalid_or_reserved_variable_name_is_refused_before_any_code_is_rendered(
    name: str,
) -> None:
    for shell in SHELLS:
        with pytest.raises(UsageError):
            render_use(shell, "p", {"GOOD": "v", name: "x"}, [])
        with pytest.raises(UsageError):
            render_use(shell, "p", {"GOOD": "v"}, [name])
        with pytest.raises(UsageError):
            render_clear(shell, [name])


def test_the_bookkeeping_variables_cannot_be_set_by_a_preset() -> None:
    with pytest.raises(UsageError):
        render_use("bash", "p", {PRESET_VARS_VAR: "PATH"}, [])


def test_a_value_with_a_nul_character_is_refused() -> None:
    with pytest.raises(UsageError, match="NUL"):
        render_use("bash", "p", {"A": "x\0y"}, [])


def test_a_tampered_variable_list_is_refused_with_a_way_out() -> None:
    with pytest.raises(UsageError) as error:
        parse_applied_vars("GOOD,$(rm -rf ~)")
    assert error.value.hint is not None
    assert PRESET_VARS_VAR in error.value.hint


def test_the_variable_list_parses_empty_and_repeated_entries() -> None:
    assert parse_applied_vars(None) == ()
    assert parse_applied_vars("") == ()
    assert parse_applied_vars("A,,B,A") == ("A", "B")


@pytest.mark.parametrize(
    ("name", "shell"),
    [
        ("bash", "bash"),
        ("/usr/bin/zsh", "zsh"),
        ("-bash", "bash"),
        ("-zsh", "zsh"),
        ("/opt/homebrew/bin/fish", "fish"),
        ("pwsh", "powershell"),
        ("pwsh.exe", "powershell"),
        ("PowerShell", "powershell"),
        ("C:\\Program Files\\PowerShell\\7\\pwsh.exe", "powershell"),
    ],
)
def test_a_shell_is_recognised_by_path_login_name_or_alias(name: str, shell: str) -> None:
    assert normalize_shell(name) == shell


@pytest.mark.parametrize("name", ["tcsh", "sh", "", "cmd.exe", "bash; rm -rf /"])
def test_an_unknown_shell_is_a_one_line_usage_error(name: str) -> None:
    with pytest.raises(UsageError) as error:
        normalize_shell(name)
    assert "\n" not in error.value.one_line()


def test_detection_prefers_the_explicit_shell_then_the_wrapper_then_the_parent_then_shell() -> None:
    assert detect_shell("fish", "zsh", "/bin/bash", wrapper="bash") == "fish"
    assert detect_shell(None, "zsh", "/bin/bash", wrapper="fish") == "fish"
    assert detect_shell(None, "zsh", "/usr/bin/fish") == "zsh"
    assert detect_shell(None, "python3", "/usr/bin/fish") == "fish"
    assert detect_shell(None, None, None) == "bash"
    assert detect_shell(None, "make", "/bin/tcsh") == "bash"


def test_detection_treats_a_posix_parent_as_bash_compatible() -> None:
    assert detect_shell(None, "dash", "/usr/bin/fish") == "bash"


def test_an_explicit_unknown_shell_is_refused_rather_than_guessed() -> None:
    with pytest.raises(UsageError):
        detect_shell("tcsh", "bash", "/bin/bash")
