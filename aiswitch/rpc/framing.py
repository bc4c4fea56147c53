"""Bytes to lines, in bounded memory: the framing of newline-delimited JSON-RPC.

Contract:
- `LineFramer.feed(data)` returns, in order, the lines that `data` completes (without
  their newline), and keeps the incomplete tail for the next call; `end()` returns that
  tail at end of input (a last line need not end with a newline).
- A line longer than `limit` bytes is never held: as soon as the limit is passed, with
  or without its newline, an `Oversized` carrying the line's first `HEAD_BYTES` takes
  its place in the output, and the rest of the line is dropped as it arrives, up to its
  newline. So the framer never holds more than `limit` bytes (`held`), however long a
  line goes on, and the reader learns of an oversized line at once, not at its end.
  The head never reaches past the line's own newline (into the next line's id).
- The framer does no I/O. What feeds it is a public asyncio protocol: the peer's input
  side (`aiswitch.rpc.peer.Peer.data_received` and friends), called from
  `asyncio.Protocol` on a read pipe (`aiswitch.rpc.stdio`) or from
  `asyncio.SubprocessProtocol` on a child's stdout (`aiswitch.rpc.child`).
"""

from __future__ import annotations

# How much of an oversized line is kept: enough to find its request id.
HEAD_BYTES = 4096


class Oversized:
    """A line over the limit, as far as it matters: its first bytes."""

    __slots__ = ("head",)

    def __init__(self, head: bytes) -> None:
        self.head = head

    def __repr__(self) -> str:
        return f"Oversized({self.head[:40]!r}...)"


class LineFramer:
    """Splits a byte stream into lines of at most `limit` bytes (see the module contract)."""

    __slots__ = ("_buf", "_discarding", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._discarding = False

    @property
    def held(self) -> int:
        """Bytes of an incomplete line held until its newline comes (never over `limit`)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | Oversized]:
        """The lines `data` completes, in order; an `Oversized` for a line over the limit."""
        out: list[bytes | Oversized] = []
        limit = self.limit
        start = 0
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return out
            self._discarding = False
            start = newline + 1
        elif self._buf:
            buf = self._buf
            newline = data.find(b"\n")
            if newline < 0:
                if len(buf) + len(data) > limit:
                    out.append(Oversized(_head(buf, data)))
                    self._buf = bytearray()
                    self._discarding = True
                else:
                    buf += data
                return out
            if len(buf) + newline > limit:
                out.append(Oversized(_head(buf, data[:newline])))
            else:
                buf += data[:newline]
                out.append(bytes(buf))
            self._buf = bytearray()
            start = newline + 1
        end = len(data)
        find = data.find
        append = out.append
        while start < end:
            newline = find(b"\n", start)
            if newline < 0:
                if end - start > limit:
                    append(Oversized(data[start : start + HEAD_BYTES]))
                    self._discarding = True
                else:
                    self._buf += data[start:]
                break
            if newline - start > limit:
                append(Oversized(data[start : min(newline, start + HEAD_BYTES)]))
            else:
                append(data[start:newline])
            start = newline + 1
        return out

    def end(self) -> bytes | None:
        """At end of input: the incomplete last line, if there is one (and it fits)."""
        tail = bytes(self._buf) if self._buf and not self._discarding else None
        self.reset()
        return tail

    def reset(self) -> None:
        """Forget any partial line (the input is over, or no longer read)."""
        self._buf = bytearray()
        self._discarding = False


def _head(buf: bytearray, data: bytes) -> bytes:
    """The first `HEAD_BYTES` of a line that began in `buf` and goes on in `data`."""
    head = bytes(buf[:HEAD_BYTES])
    return head + data[: HEAD_BYTES - len(head)]
