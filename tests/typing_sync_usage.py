"""Checked by mypy --strict and pyright strict, never run: the generated OVOClient has
real, typed signatures.

Each `assert_type` fails if a return type is wrong; each `type: ignore[...]` must stay
needed (`warn_unused_ignores` is part of --strict), so a signature that became too loose
fails too.
"""

from __future__ import annotations

from collections.abc import Iterator

from typing_extensions import assert_type

from ovo_async import BatchResult, Message, OVOClient, SentMessage, SMSRequest


def use(client: OVOClient) -> None:
    assert_type(client.sms.send(to="+14155550123", from_="OVO", message="Hi"), SentMessage)
    assert_type(client.sms.batch([SMSRequest(to="+14155550123", message="Hi")]), BatchResult)
    assert_type(client.sms.batch([{"to": "+14155550123", "message": "Hi"}]), BatchResult)
    assert_type(client.sms.retrieve("sm_1"), Message)
    assert_type(client.with_options(timeout=2.0, max_retries=0), OVOClient)
    assert_type(client.close(), None)
    with OVOClient(api_key="k") as same:
        assert_type(same, OVOClient)

    client.sms.send(to="+14155550123", message="Hi", colour="red")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    client.sms.send("+14155550123", "OVO", "Hi")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    client.sms.retrieve(42)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    client.with_options(timeout="fast")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    OVOClient(api_key=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def not_async(client: OVOClient) -> Iterator[str]:
    sent = client.sms.send(to="+14155550123", from_="OVO", message="Hi")
    yield sent.message_id  # a SentMessage, not a coroutine: no await needed


def misspelt() -> None:
    # A misspelt name is an error for checkers (no lazy `__getattr__` turns it into Any).
    from ovo_async import OVOClinet  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownVariableType, reportUnusedImport]  # noqa: F401
