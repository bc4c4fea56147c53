"""The JSON-RPC peer against an in-memory fake peer (tests/support/memory_pipe.py).

Two kinds of test: peer-to-peer (a client `Peer` and a server `Peer` on one duplex) for
behaviour, and peer-to-raw (one `Peer`, the other end written and read by hand) for what
goes on the wire. Every await that could hang sits under `asyncio.timeout`.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel
from support.memory_pipe import End, duplex, peer_on

from aiswitch.rpc import codes
from aiswitch.rpc.errors import (
    ConnectionClosedError,
    MessageTooLargeError,
    MethodError,
    RemoteError,
    RequestTimeoutError,
)
from aiswitch.rpc.messages import Params
from aiswitch.rpc.peer import DEFAULT_REQUEST_TIMEOUT, Peer

# Bounds every wait in these tests: replies come within a few loop iterations.
HANG_GUARD_S = 5.0
# A line limit small enough to overflow cheaply.
SMALL_LIMIT = 1024
SECRET = "sk-live-THIS-MUST-NOT-LEAK-42"


async def echo(params: Params) -> Any:
    return params


async def boom(params: Params) -> Any:
    raise RuntimeError(f"failed while using key {SECRET}")


class Person(BaseModel):
    name: str
    age: int


async def validate_person(params: Params) -> Any:
    return Person.model_validate(params).model_dump()


async def unknown_task(params: Params) -> Any:
    raise MethodError(codes.UNKNOWN_TASK, "no task 't-9'", {"task_id": "t-9"})


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


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Peer, Peer]]:
    """A client and a server peer on one in-memory duplex; the server answers `echo`."""
    left, right = duplex()
    client = peer_on(left, name="client")
    server = peer_on(right, name="server")
    server.on_request("echo", echo)
    client.start()
    server.start()
    yield client, server
    await client.close()
    await server.close()


@pytest.fixture
async def served() -> AsyncIterator[tuple[Peer, End]]:
    """A server peer, and the raw end that talks to it."""
    left, raw = duplex()
    server = peer_on(left, name="server")
    server.on_request("echo", echo)
    server.on_request("boom", boom)
    server.on_request("person", validate_person)
    server.on_request("unknown_task", unknown_task)
    server.start()
    yield server, raw
    await server.close()


@pytest.fixture
async def calling() -> AsyncIterator[tuple[Peer, End]]:
    """A client peer, and the raw end that answers it by hand."""
    left, raw = duplex()
    client = peer_on(left, name="client")
    client.start()
    yield client, raw
    await client.close()


# -- round trips and ids ------------------------------------------------------------


async def test_a_request_gets_its_result_back(pair: tuple[Peer, Peer]) -> None:
    client, _server = pair
    async with asyncio.timeout(HANG_GUARD_S):
        assert await client.request("echo", {"text": "hello", "n": [1, 2]}) == {
            "text": "hello",
            "n": [1, 2],
        }
        assert await client.request("echo", ["a", 1]) == ["a", 1]


async def test_a_request_goes_out_as_one_compact_line_with_an_int_id(
    calling: tuple[Peer, End],
) -> None:
    client, raw = calling
    async with asyncio.timeout(HANG_GUARD_S):
        call = asyncio.create_task(client.request("echo", {"a": 1}))
        line = await raw.read_line()
        assert line.count(b"\n") == 1
        assert b" " not in line
        sent = json.loads(line)
        assert sent == {"jsonrpc": "2.0", "id": sent["id"], "method": "echo", "params": {"a": 1}}
        assert type(sent["id"]) is int
        await raw.send_line({"jsonrpc": "2.0", "id": sent["id"], "result": "done"})
        assert await call == "done"


class Order(BaseModel):
    item: str
    timeout_s: float | None = None
    note: str | None = None
    options: dict[str, Any] = {}


async def test_a_model_goes_out_as_its_json_form_written_by_pydantic(
    calling: tuple[Peer, End],
) -> None:
    """Request params, notification params and results that are models: what pydantic's
    JSON form says (a float that is not finite is null), and text no JSON can hold (a lone
    surrogate in a field of any type) still goes, escaped."""
    client, raw = calling
    sent_models = [
        Order(item="ünï \u2028 \x00", timeout_s=2.5, options={"n": 2**70, "l": [1.5, None]}),
        Order(item="x", timeout_s=float("inf"), options={"nan": float("nan")}),
        Order(item="y", options={"half": "a\ud800"}),
    ]
    async with asyncio.timeout(HANG_GUARD_S):
        for model in sent_models:
            call = asyncio.create_task(client.request('method "q"', model))
            line = await raw.read_line()
            assert line.endswith(b"\n") and line.count(b"\n") == 1 and b" " not in line[:40]
            sent = json.loads(line)
            assert sent["method"] == 'method "q"' and type(sent["id"]) is int
            expected = json.loads(model.model_dump_json()) if model.item != "y" else None
            if expected is not None:
                assert sent["params"] == expected
            else:
                assert sent["params"]["options"] == {"half": "a\ud800"}
            await raw.send_line({"jsonrpc": "2.0", "id": sent["id"], "result": "ok"})
            assert await call == "ok"
            await client.notify("note", model)
            note = json.loads(await raw.read_line())
            assert note == {"jsonrpc": "2.0", "method": "note", "params": sent["params"]}
    assert sent_models[1].model_dump_json().count("null") >= 2  # inf and nan: null


async def test_a_model_result_is_answered_as_its_json_form(served: tuple[Peer, End]) -> None:
    server, raw = served

    async def order(params: Params) -> Any:
        return Order(item="z", timeout_s=float("inf"))

    server.on_request("order", order)
    async with asyncio.timeout(HANG_GUARD_S):
        for request_id in (7, 'id "7"'):
            await raw.send_line(request(request_id, "order"))
            answer = json.loads(await raw.read_line())
            assert answer == {
                "jsonrpc": "2.0",
                "id": request_id,
                "result": {"item": "z", "timeout_s": None, "note": None, "options": {}},
            }


async def test_a_string_id_is_answered_with_the_same_string(served: tuple[Peer, End]) -> None:
    _server, raw = served
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line(request("abc-1", params={"x": 1}))
        assert await raw.read_message() == {"jsonrpc": "2.0", "id": "abc-1", "result": {"x": 1}}


@pytest.mark.parametrize("bad_id", ["1.5", "1.0", "true", "false", "{}", "[1]"])
async def test_a_request_whose_id_is_not_an_int_or_string_is_answered_invalid_with_id_null(
    served: tuple[Peer, End], bad_id: str
) -> None:
    server, raw = served
    called: list[Params] = []

    async def record(params: Params) -> Any:
        called.append(params)
        return "ran"

    server.on_request("record", record)
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line(f'{{"jsonrpc":"2.0","id":{bad_id},"method":"record"}}')
        reply = await raw.read_message()
    assert reply["id"] is None
    assert reply["error"]["code"] == codes.INVALID_REQUEST
    assert called == []


# -- bad input: the reader answers what it can and keeps going ----------------------


async def test_invalid_json_is_answered_parse_error_with_id_null_and_the_reader_keeps_going(
    served: tuple[Peer, End],
) -> None:
    server, raw = served
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line(b'{"jsonrpc":"2.0","id":1,"method":"echo"')
        await raw.send_line(b"\xff\xfe not even utf-8")
        first = await raw.read_message()
        second = await raw.read_message()
        await raw.send_line(request(2, params={"still": "alive"}))
        third = await raw.read_message()
    for reply in (first, second):
        assert reply["id"] is None
        assert reply["error"]["code"] == codes.PARSE_ERROR
        assert reply["error"]["message"] == "Parse error"
    assert third == {"jsonrpc": "2.0", "id": 2, "result": {"still": "alive"}}
    assert server.skipped_lines == 2
    assert not server.closed.is_set()


async def test_blank_lines_are_ignored_without_an_answer(served: tuple[Peer, End]) -> None:
    server, raw = served
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line(b"\n")
        await raw.send_line(b"   \r\n")
        await raw.send_line(request(1))
        assert (await raw.read_message())["id"] == 1
    assert server.skipped_lines == 0


@pytest.mark.parametrize(
    ("line", "expected_id"),
    [
        ("42", None),
        ('"just a string"', None),
        ('{"jsonrpc":"1.0","id":7,"method":"echo"}', 7),
        ('{"id":7,"method":"echo"}', 7),
        ('{"jsonrpc":"2.0","id":7,"method":5}', 7),
        ('{"jsonrpc":"2.0","id":7,"method":"echo","params":"a string"}', 7),
        ('{"jsonrpc":"2.0","id":7,"method":"echo","extra":true}', 7),
        ('{"jsonrpc":"2.0","id":"s","nothing":"here"}', "s"),
    ],
)
async def test_a_message_of_the_wrong_shape_is_answered_invalid_request(
    served: tuple[Peer, End], line: str, expected_id: Any
) -> None:
    server, raw = served
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line(line)
        reply = await raw.read_message()
        await raw.send_line(request(8))
        after = await raw.read_message()
    assert reply["jsonrpc"] == "2.0"
    assert reply["id"] == expected_id
    assert reply["error"]["code"] == codes.INVALID_REQUEST
    assert reply["error"]["message"] == "Invalid Request"
    assert after["id"] == 8
    assert server.skipped_lines == 1


async def test_a_reply_with_an_unknown_id_is_skipped_counted_and_not_answered(
    calling: tuple[Peer, End],
) -> None:
    client, raw = calling
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line({"jsonrpc": "2.0", "id": 999, "result": "nobody asked"})
        await raw.send_line(
            {"jsonrpc": "2.0", "id": "who", "error": {"code": -32000, "message": "x"}}
        )
        call = asyncio.create_task(client.request("echo", {"n": 1}))
        sent = await raw.read_message()
        # The only line the client wrote is its own request, not an answer to the replies.
        assert sent["method"] == "echo"
        await raw.send_line({"jsonrpc": "2.0", "id": sent["id"], "result": "mine"})
        assert await call == "mine"
    assert client.skipped_lines == 2
    assert raw.unread() == b""  # nothing else was written


async def test_a_late_reply_after_the_request_timed_out_is_skipped(
    calling: tuple[Peer, End],
) -> None:
    client, raw = calling
    async with asyncio.timeout(HANG_GUARD_S):
        call = asyncio.create_task(client.request("slow", timeout=0.05))
        sent = await raw.read_message()
        with pytest.raises(RequestTimeoutError) as caught:
            await call
        assert caught.value.method == "slow"
        await raw.send_line({"jsonrpc": "2.0", "id": sent["id"], "result": "too late"})
        # A later round trip proves the late line has been read (the reader is in order).
        follow = asyncio.create_task(client.request("echo"))
        sent_next = await raw.read_message()
        assert sent_next["id"] != sent["id"]
        await raw.send_line({"jsonrpc": "2.0", "id": sent_next["id"], "result": "on time"})
        assert await follow == "on time"
    assert client.skipped_lines == 1


async def test_a_notification_handler_that_fails_does_not_stop_the_reader(
    pair: tuple[Peer, Peer],
) -> None:
    client, server = pair
    seen: list[Params] = []

    def fragile(params: Params) -> None:
        seen.append(params)
        raise ValueError("handler bug")

    server.on_notification("fragile", fragile)
    async with asyncio.timeout(HANG_GUARD_S):
        await client.notify("fragile", {"n": 1})
        assert await client.request("echo", ["ok"]) == ["ok"]
    assert seen == [{"n": 1}]


# -- handler failures become wire errors, without leaking ----------------------------


async def test_an_unknown_method_is_answered_method_not_found(served: tuple[Peer, End]) -> None:
    _server, raw = served
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line(request(3, "no.such.method"))
        reply = await raw.read_message()
    assert reply["id"] == 3
    assert reply["error"]["code"] == codes.METHOD_NOT_FOUND
    assert reply["error"]["message"] == "Method not found"


async def test_an_unknown_method_raises_a_remote_error_with_its_code(
    pair: tuple[Peer, Peer],
) -> None:
    client, _server = pair
    async with asyncio.timeout(HANG_GUARD_S):
        with pytest.raises(RemoteError) as caught:
            await client.request("no.such.method")
    assert caught.value.code == codes.METHOD_NOT_FOUND


async def test_a_handler_crash_is_internal_error_with_no_traceback_and_no_secret(
    served: tuple[Peer, End],
) -> None:
    _server, raw = served
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line(request(4, "boom", {"key": SECRET}))
        line = await raw.read_line()
    reply = json.loads(line)
    assert reply["id"] == 4
    assert reply["error"]["code"] == codes.INTERNAL_ERROR
    assert reply["error"]["message"] == "Internal error"
    assert "data" not in reply["error"]
    for leak in (SECRET.encode(), b"Traceback", b"RuntimeError", b'File "', b"boom"):
        assert leak not in line


async def test_a_validation_error_is_invalid_params_naming_the_fields_not_the_values(
    served: tuple[Peer, End],
) -> None:
    _server, raw = served
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line(request(5, "person", {"age": SECRET}))
        line = await raw.read_line()
    reply = json.loads(line)
    assert reply["id"] == 5
    assert reply["error"]["code"] == codes.INVALID_PARAMS
    assert reply["error"]["data"] == {"fields": ["age", "name"]}
    assert SECRET.encode() not in line
    assert b"Traceback" not in line


async def test_a_method_error_keeps_its_code_message_and_data(pair: tuple[Peer, Peer]) -> None:
    client, server = pair
    server.on_request("unknown_task", unknown_task)
    async with asyncio.timeout(HANG_GUARD_S):
        with pytest.raises(RemoteError) as caught:
            await client.request("unknown_task")
    assert caught.value.code == codes.UNKNOWN_TASK
    assert caught.value.remote_message == "no task 't-9'"
    assert caught.value.data == {"task_id": "t-9"}


# -- batches -------------------------------------------------------------------------


async def test_a_batch_is_answered_as_one_array_and_its_notifications_get_no_answer(
    served: tuple[Peer, End],
) -> None:
    server, raw = served
    noted: list[Params] = []
    server.on_notification("note", noted.append)
    batch = [
        request(1, params={"n": 1}),
        notification("note", {"n": "x"}),
        request(2, "no.such.method"),
        request("three", params=[3]),
    ]
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line(batch)
        replies = await raw.read_message()
    assert isinstance(replies, list)
    by_id = {reply["id"]: reply for reply in replies}
    assert set(by_id) == {1, 2, "three"}
    assert by_id[1]["result"] == {"n": 1}
    assert by_id[2]["error"]["code"] == codes.METHOD_NOT_FOUND
    assert by_id["three"]["result"] == [3]
    assert noted == [{"n": "x"}]


async def test_a_batch_with_an_invalid_item_answers_that_item_in_the_array(
    served: tuple[Peer, End],
) -> None:
    _server, raw = served
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line([1, request(2)])
        replies = await raw.read_message()
    assert isinstance(replies, list)
    assert len(replies) == 2
    invalid = next(reply for reply in replies if "error" in reply)
    assert invalid["id"] is None
    assert invalid["error"]["code"] == codes.INVALID_REQUEST
    assert {"jsonrpc": "2.0", "id": 2, "result": None} in replies


async def test_a_batch_of_only_notifications_gets_no_answer_at_all(
    served: tuple[Peer, End],
) -> None:
    server, raw = served
    noted: list[Params] = []
    server.on_notification("note", noted.append)
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line([notification("note", [1]), notification("note", [2])])
        await raw.send_line(request(9))
        # The next line out is the answer to the single request: the batch got none.
        assert (await raw.read_message())["id"] == 9
    assert noted == [[1], [2]]


async def test_an_empty_batch_gets_one_invalid_request_not_an_array(
    served: tuple[Peer, End],
) -> None:
    _server, raw = served
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line(b"[]")
        reply = await raw.read_message()
        await raw.send_line(request(10))
        after = await raw.read_message()
    assert reply == {
        "jsonrpc": "2.0",
        "id": None,
        "error": reply["error"],
    }
    assert reply["error"]["code"] == codes.INVALID_REQUEST
    assert after["id"] == 10


# -- end of stream -------------------------------------------------------------------


async def test_eof_fails_every_pending_request_at_once_with_connection_closed(
    calling: tuple[Peer, End],
) -> None:
    client, raw = calling
    calls = [asyncio.create_task(client.request("wait", {"n": n})) for n in range(5)]
    async with asyncio.timeout(HANG_GUARD_S):
        for _ in calls:
            await raw.read_message()  # all five are on the wire, hence pending
    raw.close()
    # By the EOF, not by their deadlines: each fails with ConnectionClosedError (a deadline
    # would be RequestTimeoutError), and the guard is far inside the 30 s request timeout.
    assert HANG_GUARD_S < DEFAULT_REQUEST_TIMEOUT / 2
    async with asyncio.timeout(HANG_GUARD_S):
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        await client.wait_closed()
    assert all(isinstance(outcome, ConnectionClosedError) for outcome in outcomes), outcomes
    assert client.close_reason == "end of stream"


async def test_a_notification_held_for_the_turn_goes_out_in_one_write_with_the_answer() -> None:
    """A task's usage (`hold=True`), then its answer in the same turn: one write, the
    usage first, out by the turn's end (an adapter's pipe writes are its dearest part)."""
    left, raw = duplex()
    server = peer_on(left, name="server")

    async def assign(params: Params) -> Any:
        await server.notify("tokens.usage", {"input_tokens": 3}, hold=True)
        return {"status": "ok"}

    server.on_request("task.assign", assign)
    server.start()
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line(request(1, "task.assign"))
        usage = await raw.read_message()
        answer = await raw.read_message()
    assert usage == notification("tokens.usage", {"input_tokens": 3})
    assert answer == {"jsonrpc": "2.0", "id": 1, "result": {"status": "ok"}}
    assert left.transport.writes == 1
    await server.close()


async def test_a_request_whose_write_breaks_the_pipe_raises_and_leaves_no_failed_future() -> None:
    """A pipe breaks as a request is written (the child just died): asyncio's pipe
    transport drops the data and closes itself. That fails every pending call, the new
    one too; the caller gets the error raised, and no future is left failed with nobody
    to see it (asyncio logs "Future exception was never retrieved" for those, as batches
    with crashing children did)."""
    loop = asyncio.get_running_loop()
    logged: list[str] = []
    loop.set_exception_handler(lambda _loop, context: logged.append(context["message"]))
    left, raw = duplex()
    client = peer_on(left, name="client")
    client.start()
    pending = client.send_request("wait", timeout=None)
    async with asyncio.timeout(HANG_GUARD_S):
        assert (await raw.read_message())["method"] == "wait"
    # One loop turn: the turn that wrote `wait` ends, so the next line is written at
    # once (not held for the turn's one write), the path where the pipe's break shows.
    await asyncio.sleep(0)
    transport = left.transport

    def write_on_a_broken_pipe(data: bytes) -> None:
        transport._closing = True  # what a real pipe transport does on EPIPE

    transport.write = write_on_a_broken_pipe  # type: ignore[method-assign]
    with pytest.raises(ConnectionClosedError, match="output stream closed"):
        client.send_request("echo", {"n": 1}, timeout=None)
    async with asyncio.timeout(HANG_GUARD_S):
        with pytest.raises(ConnectionClosedError):
            await pending  # the call that was waiting fails with it
        await client.wait_closed()
    gc.collect()
    assert logged == []
    assert raw.unread() == b""
    await client.close()


async def test_a_request_after_eof_fails_at_once_without_writing(
    calling: tuple[Peer, End],
) -> None:
    client, raw = calling
    raw.close()
    async with asyncio.timeout(HANG_GUARD_S):
        await client.wait_closed()
        with pytest.raises(ConnectionClosedError):
            await client.request("echo")
    assert raw.unread() == b""


# -- the line limit ------------------------------------------------------------------


async def test_an_oversized_reply_fails_its_request_at_once_and_later_lines_are_read() -> None:
    left, raw = duplex()
    client = peer_on(left, name="client", line_limit=SMALL_LIMIT)
    client.start()
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            big = asyncio.create_task(client.request("big"))
            small = asyncio.create_task(client.request("small"))
            big_id = (await raw.read_message())["id"]
            small_id = (await raw.read_message())["id"]
            oversized = {"jsonrpc": "2.0", "id": big_id, "result": "x" * (SMALL_LIMIT * 4)}
            await raw.send_line(oversized)
            await raw.send_line({"jsonrpc": "2.0", "id": small_id, "result": "fits"})
            with pytest.raises(MessageTooLargeError):
                await big
            assert await small == "fits"
        assert client.skipped_lines == 1
        assert not client.closed.is_set()
    finally:
        await client.close()


async def test_an_oversized_line_arriving_in_pieces_is_discarded_without_a_hang() -> None:
    left, raw = duplex()
    client = peer_on(left, name="client", line_limit=SMALL_LIMIT)
    client.start()
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            big = asyncio.create_task(client.request("big"))
            big_id = (await raw.read_message())["id"]
            raw.write(f'{{"jsonrpc":"2.0","id":{big_id},"result":"'.encode())
            for _ in range(8):
                raw.write(b"y" * SMALL_LIMIT)
                await asyncio.sleep(0)  # a turn between pieces, as a pipe gives
            raw.write(b'"}\n')
            with pytest.raises(MessageTooLargeError):
                await big
            follow = asyncio.create_task(client.request("after"))
            follow_id = (await raw.read_message())["id"]
            await raw.send_line({"jsonrpc": "2.0", "id": follow_id, "result": "read"})
            assert await follow == "read"
    finally:
        await client.close()
    assert client.skipped_lines == 1


async def test_an_oversized_request_is_answered_message_too_large_with_its_id() -> None:
    left, raw = duplex()
    server = peer_on(left, name="server", line_limit=SMALL_LIMIT)
    server.on_request("echo", echo)
    server.start()
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await raw.send_line(request(11, params={"blob": "z" * (SMALL_LIMIT * 2)}))
            reply = await raw.read_message()
            await raw.send_line(request(12, params=["small"]))
            after = await raw.read_message()
    finally:
        await server.close()
    assert reply["id"] == 11
    assert reply["error"]["code"] == codes.MESSAGE_TOO_LARGE
    assert after == {"jsonrpc": "2.0", "id": 12, "result": ["small"]}


async def test_an_outgoing_message_over_the_limit_is_refused_without_writing() -> None:
    left, raw = duplex()
    client = peer_on(left, name="client", line_limit=SMALL_LIMIT)
    client.start()
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            with pytest.raises(MessageTooLargeError):
                await client.request("echo", {"blob": "q" * SMALL_LIMIT})
            with pytest.raises(MessageTooLargeError):
                await client.notify("note", {"blob": "q" * SMALL_LIMIT})
            assert left.transport.writes == 0
            # The peer is still usable: the next message that fits goes out.
            await client.notify("note", {"blob": "fits"})
            assert (await raw.read_message())["params"] == {"blob": "fits"}
        assert not client.closed.is_set()
    finally:
        await client.close()


async def test_a_result_over_the_limit_is_answered_message_too_large_instead() -> None:
    left, raw = duplex()
    server = peer_on(left, name="server", line_limit=SMALL_LIMIT)

    async def huge(params: Params) -> Any:
        return "r" * (SMALL_LIMIT * 2)

    server.on_request("huge", huge)
    server.start()
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await raw.send_line(request(13, "huge"))
            reply = await raw.read_message()
    finally:
        await server.close()
    assert reply["id"] == 13
    assert reply["error"]["code"] == codes.MESSAGE_TOO_LARGE


# -- concurrency and order -----------------------------------------------------------


async def test_a_slow_handler_does_not_block_a_fast_one(pair: tuple[Peer, Peer]) -> None:
    client, server = pair
    release = asyncio.Event()
    slow_started = asyncio.Event()
    finished: list[str] = []

    async def slow(params: Params) -> Any:
        slow_started.set()
        await release.wait()
        return "slow"

    server.on_request("slow", slow)
    async with asyncio.timeout(HANG_GUARD_S):
        slow_call = asyncio.create_task(client.request("slow"))
        slow_call.add_done_callback(lambda _: finished.append("slow"))
        await slow_started.wait()
        assert await client.request("echo", ["fast"]) == ["fast"]
        finished.append("fast")
        assert not slow_call.done()
        release.set()
        assert await slow_call == "slow"
    assert finished == ["fast", "slow"]


async def test_notifications_are_delivered_in_the_order_they_were_sent(
    pair: tuple[Peer, Peer],
) -> None:
    client, server = pair
    received: list[int] = []
    all_in = asyncio.Event()
    count = 200

    async def progress(params: Params) -> None:
        assert isinstance(params, dict)
        if params["n"] % 3 == 0:
            await asyncio.sleep(0)  # a handler that yields must not let later ones pass it
        received.append(params["n"])
        if len(received) == count:
            all_in.set()

    server.on_notification("task.progress", progress)
    async with asyncio.timeout(HANG_GUARD_S):
        for n in range(count):
            await client.notify("task.progress", {"n": n})
        await all_in.wait()
    assert received == list(range(count))


async def test_many_concurrent_requests_each_get_their_own_reply(pair: tuple[Peer, Peer]) -> None:
    client, _server = pair
    async with asyncio.timeout(HANG_GUARD_S):
        results = await asyncio.gather(*(client.request("echo", {"n": n}) for n in range(300)))
    assert results == [{"n": n} for n in range(300)]


# -- regressions --------------------------------------------------------------------


async def test_a_malformed_reply_to_a_pending_request_fails_it_at_once_unanswered(
    calling: tuple[Peer, End],
) -> None:
    from aiswitch.rpc.errors import ProtocolError

    client, raw = calling
    async with asyncio.timeout(HANG_GUARD_S):
        call = asyncio.create_task(client.request("echo", {"n": 1}, timeout=None))
        sent = await raw.read_message()
        # An error object without a message is not a valid response.
        await raw.send_line({"jsonrpc": "2.0", "id": sent["id"], "error": {"code": 1}})
        with pytest.raises(ProtocolError):
            await call
    assert raw.unread() == b""  # an invalid response is never answered


async def test_a_result_that_is_not_valid_unicode_is_still_answered(
    pair: tuple[Peer, Peer],
) -> None:
    client, server = pair

    async def lone_surrogate(params: Params) -> Any:
        return "half a pair: \ud800"

    server.on_request("odd", lone_surrogate)
    async with asyncio.timeout(HANG_GUARD_S):
        assert await client.request("odd") == "half a pair: \ud800"


def test_an_adapter_whose_stdin_is_dev_null_exits_instead_of_hanging() -> None:
    import subprocess
    import sys

    with open("/dev/null", "rb") as devnull:
        proc = subprocess.run(
            [sys.executable, "-m", "aiswitch_adapters.mock"],
            stdin=devnull,
            capture_output=True,
            timeout=HANG_GUARD_S * 3,
        )
    assert proc.returncode == 0
    assert b"Traceback" not in proc.stderr


# -- reading as data arrives (no reader task) ----------------------------------------


async def test_an_oversized_reply_fails_its_request_as_soon_as_the_limit_is_passed() -> None:
    left, raw = duplex()
    client = peer_on(left, name="client", line_limit=SMALL_LIMIT)
    client.start()
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            big = asyncio.create_task(client.request("big"))
            big_id = (await raw.read_message())["id"]
            raw.write(f'{{"jsonrpc":"2.0","id":{big_id},"result":"'.encode())
            raw.write(b"y" * (SMALL_LIMIT + 1))
            # No newline yet: the line is not over, but it is already too long.
            with pytest.raises(MessageTooLargeError):
                await big
            # However long it goes on, no more than the limit is held for it.
            for _ in range(64):
                raw.write(b"y" * SMALL_LIMIT)
            assert client._framer.held <= SMALL_LIMIT
            raw.write(b'"}\n')
            follow = asyncio.create_task(client.request("after"))
            follow_id = (await raw.read_message())["id"]
            await raw.send_line({"jsonrpc": "2.0", "id": follow_id, "result": "read"})
            assert await follow == "read"
    finally:
        await client.close()
    assert client.skipped_lines == 1


async def test_a_line_in_many_pieces_is_read_whole() -> None:
    left, raw = duplex()
    server = peer_on(left, name="server")
    server.on_request("echo", echo)
    server.start()
    line = json.dumps(request(21, params={"text": "piece by piece " * 20})).encode() + b"\n"
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            for offset in range(0, len(line), 7):
                raw.write(line[offset : offset + 7])
            reply = await raw.read_message()
    finally:
        await server.close()
    assert reply == {"jsonrpc": "2.0", "id": 21, "result": {"text": "piece by piece " * 20}}


async def test_what_arrived_before_start_is_read_at_start() -> None:
    left, raw = duplex()
    server = peer_on(left, name="server")
    server.on_request("echo", echo)
    await raw.send_line(request(31, params=["early"]))
    raw.write(b'{"jsonrpc":"2.0","id":32,"method":"echo","params":["par')
    server.start()
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await raw.send_line(b'tial"]}')
            first = await raw.read_message()
            second = await raw.read_message()
    finally:
        await server.close()
    assert first == {"jsonrpc": "2.0", "id": 31, "result": ["early"]}
    assert second == {"jsonrpc": "2.0", "id": 32, "result": ["partial"]}


async def test_a_last_line_without_a_newline_is_read_at_eof(calling: tuple[Peer, End]) -> None:
    client, raw = calling
    async with asyncio.timeout(HANG_GUARD_S):
        call = asyncio.create_task(client.request("echo", timeout=None))
        sent = await raw.read_message()
        raw.write(json.dumps({"jsonrpc": "2.0", "id": sent["id"], "result": 1}).encode())
        raw.close()
        assert await call == 1
        await client.wait_closed()


async def test_an_async_notification_handler_holds_what_comes_after_it(
    calling: tuple[Peer, End],
) -> None:
    client, raw = calling
    release = asyncio.Event()
    order: list[str] = []

    async def slow_note(params: Params) -> None:
        await release.wait()
        order.append("note")

    client.on_notification("slow", slow_note)
    async with asyncio.timeout(HANG_GUARD_S):
        call = asyncio.create_task(client.request("echo"))
        sent = await raw.read_message()
        await raw.send_line(notification("slow"))
        await raw.send_line({"jsonrpc": "2.0", "id": sent["id"], "result": "after the note"})
        for _ in range(5):
            await asyncio.sleep(0)
        # The reply was read after the notification: it waits for its handler.
        assert not call.done()
        release.set()
        assert await call == "after the note"
        order.append("reply")
    assert order == ["note", "reply"]


async def test_a_line_nested_deeper_than_the_stack_is_a_parse_error(
    served: tuple[Peer, End],
) -> None:
    server, raw = served
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line(b"[" * 100_000 + b"]" * 100_000)
        reply = await raw.read_message()
        await raw.send_line(request(41))
        after = await raw.read_message()
    assert reply["error"]["code"] == codes.PARSE_ERROR
    assert after["id"] == 41
    assert not server.closed.is_set()


async def test_a_result_that_cannot_be_encoded_is_answered_internal_error(
    served: tuple[Peer, End],
) -> None:
    server, raw = served

    async def unencodable(params: Params) -> Any:
        return {"value": object()}

    server.on_request("odd", unencodable)
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line(request(42, "odd"))
        reply = await raw.read_message()
    assert reply["id"] == 42
    assert reply["error"]["code"] == codes.INTERNAL_ERROR


async def test_after_close_input_is_dropped_unread_and_unanswered(
    calling: tuple[Peer, End],
) -> None:
    client, raw = calling
    await client.close()
    await raw.send_line(request(51))
    await raw.send_line(b'{"jsonrpc":"2.0","id":52,"method":"echo"')  # and no newline
    assert client._framer.held == 0
    assert client.skipped_lines == 0
    assert raw.unread() == b""


# -- writing: a lone message at once, a burst in few writes -------------------------


async def test_a_lone_request_is_written_at_once(calling: tuple[Peer, End]) -> None:
    client, raw = calling
    task = asyncio.create_task(client.request("echo", timeout=None))
    await asyncio.sleep(0)  # the request's first step, and nothing after it
    assert raw.unread().count(b"\n") == 1
    task.cancel()


async def test_requests_sent_in_one_turn_go_out_in_a_few_writes(
    pair: tuple[Peer, Peer],
) -> None:
    client, _server = pair
    writes_before = client._out.transport.writes  # type: ignore[attr-defined]
    count = 100
    async with asyncio.timeout(HANG_GUARD_S):
        futures = [client.send_request("echo", {"n": n}) for n in range(count)]
        assert [await f for f in futures] == [{"n": n} for n in range(count)]
    writes = client._out.transport.writes - writes_before  # type: ignore[attr-defined]
    assert writes < count // 4


async def test_send_request_returns_the_future_of_the_reply_and_honours_its_timeout(
    calling: tuple[Peer, End],
) -> None:
    client, raw = calling
    async with asyncio.timeout(HANG_GUARD_S):
        answered = client.send_request("echo", [1])
        forgotten = client.send_request("slow", timeout=0.05)
        first = await raw.read_message()
        await raw.read_message()
        await raw.send_line({"jsonrpc": "2.0", "id": first["id"], "result": "one"})
        assert await answered == "one"
        with pytest.raises(RequestTimeoutError):
            await forgotten
    assert len(client._calls) == 0


# The two timeouts of the test below: the gap between them is what tells a deadline kept
# from one that waited for another timer, so it is wider than any stall of a loaded machine.
SHORT_S = 0.05
LONG_S = 2.0


async def test_requests_with_different_timeouts_each_expire_on_time(
    calling: tuple[Peer, End],
) -> None:
    client, raw = calling
    loop = asyncio.get_running_loop()
    started = loop.time()
    short = [asyncio.create_task(client.request("s", timeout=SHORT_S)) for _ in range(3)]
    long = asyncio.create_task(client.request("l", timeout=LONG_S))
    async with asyncio.timeout(HANG_GUARD_S):
        for call in short:
            with pytest.raises(RequestTimeoutError):
                await call
        short_done = loop.time() - started
        # The short ones did not wait for the long one's deadline (nor it for theirs).
        assert not long.done()
        with pytest.raises(RequestTimeoutError):
            await long
        long_done = loop.time() - started
    # Never before its own deadline (the loop's clock may round a timer 1 ms early).
    assert short_done >= SHORT_S - 0.001
    assert long_done >= LONG_S - 0.001
    assert len(client._calls) == 0 and client._calls.timed == 0
    assert raw.unread().count(b"\n") == 4


# -- the codec (the envelopes are in tests/test_rpc_envelopes.py) ------------------------

# Lines whose meaning orjson and json could disagree on, and plain ones.
CODEC_LINES = [
    b'{"a":123456789012345678901234567890}',
    b'{"a":-9223372036854775809}',
    b'{"a":18446744073709551615}',
    b'{"a":"\\ud800 lone"}',
    b'{"a":"\\ud83d\\ude00 pair"}',
    b'{"a":NaN,"b":Infinity,"c":-Infinity}',
    b'{"a":1e400}',
    b'\xef\xbb\xbf{"a":1}',
    b'{"a":0.1,"b":-0.0,"c":1E5,"d":2.5e-300}',
    b'{"a":1,"a":2}',
    b'{"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":"h\xc3\xa9"}}',
    b"\xed\xa0\x80",
    b'"\xed\xa0\x80 surrogate as UTF-8"',
]


@pytest.mark.parametrize("line", CODEC_LINES)
def test_lines_read_exactly_as_json_reads_them(line: bytes) -> None:
    from aiswitch.rpc import messages

    messages.use_orjson()
    try:
        expected: Any = json.loads(line)
    except ValueError as exc:
        expected = type(exc)
    try:
        got: Any = messages.loads(line)
    except ValueError as exc:
        got = type(exc)
    assert repr(got) == repr(expected)


@pytest.mark.parametrize(
    "value",
    [
        {"n": 2**70, "m": -(2**64)},
        {"s": "half \ud800", "t": "é ✓ \u2028"},
        {"f": [0.1, -0.0, 1e16, 5e-324, float("nan"), float("inf")]},
        {1: "int key", None: "null key"},
        {"t": (1, 2), "none": None, "bool": True},
        {"none": None, "deep": [{"x": (1, [2.5, float("-inf")])}]},
        {"none": None, "f": 1.5, "params": {"cwd": None, "options": {"n": float("nan")}}},
    ],
)
def test_messages_are_written_so_that_json_reads_back_what_was_sent(value: Any) -> None:
    from aiswitch.rpc import messages

    messages.use_orjson()
    line = messages.dumps(value)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    line.decode("utf-8")  # valid UTF-8, whatever the text
    plain = json.dumps(value, separators=(",", ":"))
    assert repr(json.loads(line)) == repr(json.loads(plain))


def test_a_payload_with_nulls_but_no_nan_is_written_by_orjson() -> None:
    import orjson

    from aiswitch.rpc import messages

    messages.use_orjson()
    payload = {"jsonrpc": "2.0", "id": 1, "method": "task.assign"}
    payload["params"] = {"task_id": "r/1", "cwd": None, "timeout_s": 2.5, "options": {}}
    line = messages.dumps(payload)
    assert line == orjson.dumps(payload) + b"\n"
    assert json.loads(line) == payload


def test_a_nan_inside_an_enum_member_still_goes_to_json() -> None:
    import enum

    from aiswitch.rpc import messages

    class Odd(enum.Enum):
        NAN = float("nan")

    messages.use_orjson()
    assert messages.dumps({"none": None, "e": [Odd.NAN]}) == b'{"none":null,"e":[NaN]}\n'


def test_enum_members_and_uuids_are_written_as_their_values() -> None:
    import enum
    import uuid

    from aiswitch.rpc import messages

    class Colour(enum.Enum):
        RED = "red"

    token = uuid.UUID(int=7)
    assert json.loads(messages.dumps({"c": Colour.RED, "u": token})) == {
        "c": "red",
        "u": str(token),
    }
    with pytest.raises(TypeError):
        messages.dumps({"x": object()})


async def test_an_inline_handler_is_answered_as_read_and_its_errors_are_wire_errors(
    pair: tuple[Peer, Peer],
) -> None:
    client, server = pair
    calls: list[Any] = []

    def status(params: Params) -> Any:
        calls.append(params)
        return {"state": "ready"}

    def broken(params: Params) -> Any:
        raise RuntimeError(f"inline failure with {SECRET}")

    server.on_request_inline("status", status)
    server.on_request_inline("broken", broken)
    async with asyncio.timeout(HANG_GUARD_S):
        assert await client.request("status", {"x": 1}) == {"state": "ready"}
        with pytest.raises(RemoteError) as caught:
            await client.request("broken")
        # In a batch too (batches run their requests in a task).
        replies = await asyncio.gather(client.request("status"), client.request("echo", [1]))
    assert calls[0] == {"x": 1}
    assert caught.value.code == codes.INTERNAL_ERROR
    assert SECRET not in str(caught.value.data) and SECRET not in caught.value.remote_message
    assert replies == [{"state": "ready"}, [1]]


async def test_an_inline_handler_in_a_batch_is_answered_in_the_array(
    served: tuple[Peer, End],
) -> None:
    server, raw = served
    server.on_request_inline("ping", lambda params: "pong")
    async with asyncio.timeout(HANG_GUARD_S):
        await raw.send_line([request(1, "ping"), request(2, "echo", ["e"])])
        answers = await raw.read_message()
    assert sorted((a["id"], a["result"]) for a in answers) == [(1, "pong"), (2, ["e"])]
