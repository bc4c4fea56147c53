"""The environment an adapter gives its CLI, switchable while the adapter runs.

It starts as the adapter's own environment (which the parent built from the agent's
preset). `switch` validates everything first and then applies all of it, or nothing;
`snapshot` remembers the whole environment and `rollback` restores it exactly.
The protocol models it returns are imported on first use, not with this module (an
adapter's handshake must not wait for pydantic).

Every secret value the environment ever holds (its start, each switch) is remembered by
`aiswitch.masking`, so the adapter's log and the CLI stderr it relays mask it by value.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiswitch.masking import remember_env_secrets
from aiswitch.rpc import codes
from aiswitch.rpc.errors import MethodError

if TYPE_CHECKING:
    from aiswitch.protocol.models import EnvState, EnvSwitchParams

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Lists the variables the current preset set, so a later switch can remove them.
PRESET_VARS = "AISWITCH_PRESET_VARS"
PRESET_NAME = "AISWITCH_PRESET"
# `api` or `subscription`: how the child's preset is billed (adapters read it).
PRESET_BILLING = "AISWITCH_PRESET_BILLING"
# A bound on remembered snapshots: each holds a whole environment.
MAX_SNAPSHOTS = 64


@dataclass
class _Snapshot:
    preset: str | None
    env: dict[str, str]


@dataclass
class Environment:
    env: dict[str, str]
    preset: str | None = None
    _snapshots: dict[str, _Snapshot] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def from_process(cls, environ: Mapping[str, str]) -> Environment:
        remember_env_secrets(environ)
        return cls(env=dict(environ), preset=environ.get(PRESET_NAME) or None)

    def state(self) -> EnvState:
        from aiswitch.protocol.models import EnvState

        names = [n for n in self.env.get(PRESET_VARS, "").split(",") if n]
        return EnvState(preset=self.preset, names=names)

    def switch(self, params: EnvSwitchParams) -> EnvState:
        bad = [n for n in [*params.set, *params.unset] if not NAME_PATTERN.match(n)]
        if bad:
            raise MethodError(codes.ENV_INVALID, f"invalid variable name(s): {', '.join(bad)}")
        if any("\0" in v for v in params.set.values()):
            raise MethodError(codes.ENV_INVALID, "a value contains a NUL byte")
        env = dict(self.env)
        if params.replace:
            for name in self.state().names:
                env.pop(name, None)
        for name in params.unset:
            env.pop(name, None)
        env.update(params.set)
        remember_env_secrets(params.set)
        # A full replacement records what it set; a difference from the parent already
        # carries AISWITCH_PRESET_VARS when it changed.
        if params.replace and PRESET_VARS not in params.set:
            env[PRESET_VARS] = ",".join(sorted(params.set))
        if params.preset is None:
            env.pop(PRESET_NAME, None)
        else:
            env[PRESET_NAME] = params.preset
        self.env = env
        self.preset = params.preset
        return self.state()

    def snapshot(self) -> str:
        snapshot_id = f"snap-{next(self._ids)}"
        self._snapshots[snapshot_id] = _Snapshot(self.preset, dict(self.env))
        while len(self._snapshots) > MAX_SNAPSHOTS:
            self._snapshots.pop(next(iter(self._snapshots)))
        return snapshot_id

    def rollback(self, snapshot_id: str) -> EnvState:
        snap = self._snapshots.get(snapshot_id)
        if snap is None:
            raise MethodError(codes.UNKNOWN_SNAPSHOT, f"no snapshot {snapshot_id!r}")
        self.env = dict(snap.env)
        self.preset = snap.preset
        return self.state()
