"""The mock's options: a task's own over its environment's over the defaults, whatever
environment came before (the set of names an environment sets is kept for the last one)."""

from __future__ import annotations

import pytest
from aiswitch_adapters import mock


@pytest.fixture(autouse=True)
def no_environment_seen() -> None:
    mock._env_names = None


def test_an_option_comes_from_the_task_then_the_environment_then_the_default() -> None:
    env = {"MOCK_LATENCY": "0.5", "MOCK_STEPS": "2", "PATH": "/bin"}
    opts = mock.Options(env, {"steps": 7})
    assert opts.text("latency", mock.DEFAULT_LATENCY) == "0.5"
    assert opts.number("steps", mock.DEFAULT_STEPS) == 7
    assert opts.text("model", "mock-1") == "mock-1"
    assert opts.raw("path") is None  # not a MOCK_ variable


def test_each_environment_s_options_are_its_own_whatever_came_before() -> None:
    first = {"MOCK_FAIL": "1"}
    assert mock.Options(dict(first), {}).flag("fail")
    # An environment switched (a new dict): what it sets and no longer sets counts.
    second = {"MOCK_CRASH": "1"}
    opts = mock.Options(second, {})
    assert opts.flag("crash")
    assert not opts.flag("fail")
    # Changed in place, or a copy of the first again: read as it is now.
    second["MOCK_FAIL"] = "yes"
    assert mock.Options(second, {}).flag("fail")
    assert mock.Options(dict(first), {}).flag("fail")
    assert not mock.Options(dict(first), {}).flag("crash")
    assert mock.Options({}, {"crash": True}).flag("crash")
