"""The JSON-RPC peer against an in-memory fake peer (tests/support/memory_pipe.py).

Two kinds of test: peer-to-peer (a client `Peer` and a server `Peer` on one duplex) for
behaviour, and peer-to-raw (one `Peer`, the other end written and read by hand) for what
goes on the wire. Every await that could hang sits under `asyncio.timeout`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel
from support.memory_pipe import End, duplex

from aiswitch.rpc import codes
from aiswitch.rpc.errors import (
    ConnectionClosedError,
    MessageTooLargeError,
    MethodError,
    RemoteError,
    RequestTimeoutError,
)
from aiswitch.rpc.messages import Params
from aiswitch.rpc.peer import Peer

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
    client = Peer(left.reader, left.writer, name="client")
    server = Peer(right.reader, right.writer, name="server")
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
    server = Peer(left.reader, left.writer, name="server")
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
    client = Peer(left.reader, left.writer, name="client")
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
    loop = asyncio.get_running_loop()
    calls = [asyncio.create_task(client.request("wait", {"n": n})) for n in range(5)]
    async with asyncio.timeout(HANG_GUARD_S):
        for _ in calls:
            await raw.read_message()  # all five are on the wire, hence pending
    started = loop.time()
    raw.close()
    # Promptly: far inside the default 30 s request timeout.
    async with asyncio.timeout(1.0):
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        await client.wait_closed()
    assert loop.time() - started < 1.0
    assert all(isinstance(outcome, ConnectionClosedError) for outcome in outcomes), outcomes
    assert client.close_reason == "end of stream"


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
    left, raw = duplex(limit=SMALL_LIMIT)
    client = Peer(left.reader, left.writer, name="client", line_limit=SMALL_LIMIT)
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
    left, raw = duplex(limit=SMALL_LIMIT)
    client = Peer(left.reader, left.writer, name="client", line_limit=SMALL_LIMIT)
    client.start()
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            big = asyncio.create_task(client.request("big"))
            big_id = (await raw.read_message())["id"]
            raw.writer.write(f'{{"jsonrpc":"2.0","id":{big_id},"result":"'.encode())
            for _ in range(8):
                raw.writer.write(b"y" * SMALL_LIMIT)
                await raw.writer.drain()
            raw.writer.write(b'"}\n')
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
    left, raw = duplex(limit=SMALL_LIMIT)
    server = Peer(left.reader, left.writer, name="server", line_limit=SMALL_LIMIT)
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
    left, raw = duplex(limit=SMALL_LIMIT)
    client = Peer(left.reader, left.writer, name="client", line_limit=SMALL_LIMIT)
    client.start()
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            with pytest.raises(MessageTooLargeError):
                await client.request("echo", {"blob": "q" * SMALL_LIMIT})
            with pytest.raises(MessageTooLargeError):
                await client.notify("note", {"blob": "q" * SMALL_LIMIT})
            assert left.writer.writes == 0
            # The peer is still usable: the next message that fits goes out.
            await client.notify("note", {"blob": "fits"})
            assert (await raw.read_message())["params"] == {"blob": "fits"}
        assert not client.closed.is_set()
    finally:
        await client.close()


async def test_a_result_over_the_limit_is_answered_message_too_large_instead() -> None:
    left, raw = duplex(limit=SMALL_LIMIT)
    server = Peer(left.reader, left.writer, name="server", line_limit=SMALL_LIMIT)

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
