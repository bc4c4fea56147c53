"""`aiswitch mcp`: aiswitch as a Model Context Protocol server over stdio.

An agent the user already works in (Claude Code, Codex, Gemini CLI) starts runs of the other
agents through it and reads their results. It is a front door like the CLI: it parses,
calls the same runtime and the same shared functions the CLI's `--json` output comes from,
and presents. docs/mcp.md describes the tools, the limits and the set-up.

- `wire`: the protocol revisions served and how `mcp_types` models go on the wire.
- `session`: one client's session on the project's JSON-RPC peer (initialize, tools,
  progress, cancellation, the end of stdin).
- `tools`: the tools (their schemas, descriptions and what each calls).
- `catalog`: what the `agents` tool shows (agents, presets, the session's limits).
- `limits`: what the server was started with (agent allow-list, permission cap, session
  budget, nesting depth).
- `install`: the server's entry in each client's own configuration file.
"""
