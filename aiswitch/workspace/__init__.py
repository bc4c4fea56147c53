"""Workspaces: where each task's agent works, and what it changed there.

A task runs in a `worktree` (a git worktree on its own branch), a `copy` (the files git
would not ignore, inside or outside a repository) or `shared` (the user's own directory).
This layer makes and removes them (`make`), records what a task changed against the base
recorded at creation (`changes`), keeps a record of each (`records`), and applies or cleans
them (`apply`). It knows no run: the coordinator calls it, the CLI presents it; it uses the
home and the state store below it.
"""
