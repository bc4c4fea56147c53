"""JSON-RPC 2.0 over newline-delimited streams: one peer used by both sides.

`Peer` (`peer`) sends requests and notifications, answers requests with registered
handlers, and survives bad input. It is composed of `framing.LineFramer` (bytes to
bounded lines), `pending.PendingCalls` (ids, futures, deadlines) and `outbox.Outbox`
(write batching and flow control), and is fed by public asyncio protocols: `child.spawn`
gives the parent a child process with its peer, `stdio.stdio_peer` gives an adapter the
peer on its own stdin/stdout. `messages.classify` is the one envelope check (the
pydantic models in `envelopes` are its reference schema); error codes are in `codes`,
the typed errors in `errors`.
"""
