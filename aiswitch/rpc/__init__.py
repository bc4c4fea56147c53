"""JSON-RPC 2.0 over newline-delimited streams: one peer used by both sides.

`Peer` (in `aiswitch.rpc.peer`) sends requests and notifications, answers requests with
registered handlers, and survives bad input. Envelopes are in `messages`, error codes
in `codes`, the typed errors in `errors`.
"""
