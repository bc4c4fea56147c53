"""Text from agents, made safe for a terminal.

Agents print whatever their CLIs and providers send. On a terminal a control character or
an escape sequence is an instruction (OSC 52 writes the clipboard, OSC 0 sets the title,
CSI 2J clears the screen), so every such character becomes a visible escape (`\\x1b`)
before it is shown, in the live view and in plain output alike. Newlines and tabs stay;
bidirectional-override characters, which reorder what a reader sees, are escaped too.
`--json` needs none of this: JSON escapes control characters itself.

`shown()` also masks every secret value this process knows (`aiswitch.masking`), for what
the live view and the plain lines show of agents' progress and errors.
"""

from __future__ import annotations

from typing import Any, Final

_KEEP: Final = frozenset({"\n", "\t"})
# C0 controls, DEL, C1 controls, and the bidi overrides and isolates.
_UNSAFE: Final = [
    *(c for c in range(0x00, 0x20) if chr(c) not in _KEEP),
    0x7F,
    *range(0x80, 0xA0),
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
]
_TABLE: Final = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _UNSAFE}


def safe_text(text: str) -> str:
    """`text` with every control, escape and bidi-override character shown, not obeyed."""
    return text.translate(_TABLE)


def shown(text: str) -> str:
    """`text` safe for a terminal, with the secret values this process knows masked."""
    from aiswitch.masking import redact_text

    return safe_text(redact_text(text, patterns=False))


def terminal_ring(how: str, stream: Any) -> Any:
    """A notifier's terminal signal on `stream` (aiswitch.coordinator.notify): `bell` (BEL)
    or `osc9` (`ESC ] 9 ; text BEL`, a desktop notification in iTerm2, WezTerm, kitty,
    Windows Terminal, foot); None when `how` is `none` or `stream` is not a terminal (a
    pipe or a file never gets an escape sequence)."""
    if how == "none" or not stream.isatty():
        return None

    def ring(notice: dict[str, Any]) -> None:
        if how == "bell":
            sequence = "\a"
        else:
            who = notice.get("id") or notice.get("agent_id") or notice.get("run_id")
            words = shown(f"aiswitch: {who} {notice['event']}: {notice['text']}")
            sequence = f"\x1b]9;{words}\a"
        try:
            stream.write(sequence)
            stream.flush()
        except (OSError, ValueError):
            pass

    return ring
