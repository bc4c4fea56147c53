"""The one envelope check (`messages.classify`) against the envelope models.

`aiswitch.rpc.envelopes` declares the JSON-RPC 2.0 envelopes as pydantic models;
`classify` checks the same rules by hand, on every message read. These tests hold the
two to the same verdict (and the same fields) on listed cases and on thousands of
generated objects, and check that the reason for a bad envelope names fields only.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from aiswitch.rpc import envelopes, messages

SECRET = "sk-live-THIS-MUST-NOT-LEAK-42"


def request(request_id: Any, method: str = "echo", params: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


ENVELOPES: list[Any] = [
    request(1),
    request("s", params={"a": 1}),
    request(1, params=[1]),
    {"jsonrpc": "2.0", "id": 1, "method": "m", "params": None},
    notification("n"),
    notification("n", [1]),
    {"jsonrpc": "2.0", "id": 1, "result": None},
    {"jsonrpc": "2.0", "id": "x", "result": {"a": 1}},
    {"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "m"}},
    {"jsonrpc": "2.0", "id": None, "error": {"code": -1, "message": "m", "data": [1]}},
    {"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "m", "extra": 1}},
    {"jsonrpc": "2.0", "id": 1, "error": {"code": True, "message": "m"}},
    {"jsonrpc": "2.0", "id": 1, "error": {"code": 1}},
    {"jsonrpc": "2.0", "error": {"code": 1, "message": "m"}},
    {"jsonrpc": "2.0", "id": 1, "result": 1, "error": {"code": 1, "message": "m"}},
    {"jsonrpc": "2.0", "id": 1.0, "method": "m"},
    {"jsonrpc": "2.0", "id": True, "result": 1},
    {"jsonrpc": "2.0", "id": None, "method": "m"},
    {"jsonrpc": "2.0", "id": 1, "method": None},
    {"jsonrpc": "2.0", "method": "m", "params": "s"},
    {"jsonrpc": "2.0", "method": "m", "params": 1},
    {"jsonrpc": "2.0", "method": "m", "extra": 1},
    {"jsonrpc": "2.0", "id": 1, "result": 1, "extra": 1},
    {"jsonrpc": "1.0", "id": 1, "method": "m"},
    {"id": 1, "method": "m"},
    {"jsonrpc": "2.0", "id": 1},
    {"jsonrpc": "2.0"},
    {"jsonrpc": "2.0", "result": 1},
    {"jsonrpc": "2.0", "id": 1, "method": "m", "result": 1},
    {"jsonrpc": "2.0", "id": 1, "error": "not an object"},
    {"jsonrpc": "2.0", "id": [1], "error": {"code": 1, "message": "m"}},
]


def as_light(model: envelopes.Envelope) -> messages.Message:
    """The light message a model stands for, to compare with what `classify` gives."""
    if isinstance(model, envelopes.Request):
        return messages.Request(model.id, model.method, model.params)
    if isinstance(model, envelopes.Notification):
        return messages.Notification(model.method, model.params)
    if isinstance(model, envelopes.Response):
        return messages.Response(model.id, model.result)
    error = model.error
    return messages.ErrorResponse(
        model.id, messages.ErrorObject(error.code, error.message, error.data)
    )


def assert_agree(obj: dict[str, Any]) -> None:
    verdict = messages.classify(obj)
    model = envelopes.parse(obj)
    if model is None:
        assert isinstance(verdict, messages.Invalid), obj
    else:
        assert verdict == as_light(model), obj


@pytest.mark.parametrize("obj", ENVELOPES)
def test_the_one_check_agrees_with_the_envelope_models(obj: Any) -> None:
    assert_agree(obj)


# Values each key may take in the generated objects: right ones, and every kind of wrong.
KEY_VALUES: dict[str, list[Any]] = {
    "jsonrpc": ["2.0", "1.0", 2.0, None],
    "id": [1, 0, -7, "a", "", 1.0, True, False, None, [1], {"a": 1}],
    "method": ["m", "", 5, None, ["m"]],
    "params": [{"a": 1}, [1], None, "s", 1, True],
    "result": [None, 1, "r", {"a": [1]}],
    "error": [
        {"code": 1, "message": "m"},
        {"code": -32000, "message": "m", "data": {"x": 1}},
        {"code": True, "message": "m"},
        {"code": 1.0, "message": "m"},
        {"code": 1},
        {"message": "m"},
        {"code": 1, "message": 2},
        {"code": 1, "message": "m", "extra": 1},
        "e",
        None,
    ],
    "extra": [1],
}


def test_the_one_check_agrees_with_the_models_on_thousands_of_generated_objects() -> None:
    rng = random.Random(20261122)
    keys = list(KEY_VALUES)
    checked = 0
    # Every subset of keys, each with a few random choices of values.
    for size in range(len(keys) + 1):
        for chosen in itertools.combinations(keys, size):
            for _ in range(12):
                obj = {key: rng.choice(KEY_VALUES[key]) for key in chosen}
                assert_agree(obj)
                checked += 1
    assert checked > 1500


def test_a_bad_envelope_is_explained_by_its_fields_never_its_values() -> None:
    verdict = messages.classify(
        {"jsonrpc": "2.0", "id": 7, "method": SECRET.encode().hex(), "params": SECRET}
    )
    assert isinstance(verdict, messages.Invalid)
    assert verdict.reason == "invalid request (params)"
    assert verdict.id == 7 and verdict.answerable
    reply = messages.classify({"jsonrpc": "2.0", "id": 3, "error": {"code": SECRET}})
    assert isinstance(reply, messages.Invalid)
    assert reply.reason == "invalid response (error.code, error.message)"
    assert not reply.answerable  # an invalid response is never answered
    assert SECRET not in repr(verdict) + repr(reply)


def test_reading_a_message_never_imports_the_envelope_models() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from aiswitch.rpc import messages\n"
        "for obj in ({'jsonrpc': '2.0', 'id': 1, 'method': 'm'}, {'id': 1.5}, 3):\n"
        "    messages.classify(obj)\n"
        "assert 'aiswitch.rpc.envelopes' not in sys.modules\n"
        "assert 'pydantic' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
