"""Test doubles that sit at aiswitch's outer seams (stdlib only, importable without deps).

`aiswitch.testing.fake_provider` is a local HTTP server that speaks just enough of the
Anthropic Messages, OpenAI Responses and Gemini generateContent APIs for the real
`claude`, `codex` and `gemini` CLIs to run against it offline. Import from that module;
this package imports nothing itself, so `python -m aiswitch.testing.fake_provider`
runs the module exactly once.
"""
