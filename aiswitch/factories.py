"""Default factories for pydantic model fields: `new_list` and `new_dict`, not `list` and `dict`.

pydantic asks every default factory for its signature (does it take the validated data?).
For a builtin such as `list` that is `inspect.signature` parsing the builtin's text
signature with `tokenize`, whose first use compiles one large regular expression: ~4 ms of
every run's start here, before its agent is spawned. A function written in Python answers
from its code object. A test holds aiswitch's models to these
(tests/test_run_start_up.py).
"""

from __future__ import annotations

from typing import Any


def new_list() -> list[Any]:
    return []


def new_dict() -> dict[Any, Any]:
    return {}
