"""A user's test file, run by CI against the installed wheel: the pytest plugin's fixtures
as the README shows them, with no file of this repository on the path."""

from __future__ import annotations

import anyio

from ovo_async import AsyncOVOClient, OVOClient
from ovo_async.testing import FakeOVO


def notify(client: OVOClient, to: str) -> str:
    return client.sms.send(to=to, from_="Shop", message="Your order shipped").message_id


def test_notify_sends_one_sms(ovo_client: OVOClient, ovo_fake: FakeOVO) -> None:
    message_id = notify(ovo_client, "+14155550123")
    assert [m["message_id"] for m in ovo_fake.messages] == [message_id]


def test_the_async_client_on_the_same_fake(
    ovo_async_client: AsyncOVOClient, ovo_fake: FakeOVO
) -> None:
    async def main() -> None:
        async with ovo_async_client as client:
            await client.sms.send(to="+14155550123", from_="Shop", message="Hi")

    anyio.run(main)
    assert len(ovo_fake.messages) == 1


def test_a_fault_is_an_error_with_its_fate(ovo_client: OVOClient, ovo_fake: FakeOVO) -> None:
    from ovo_async import InternalServerError

    ovo_fake.fail_next("send", status=500)
    try:
        ovo_client.sms.send(to="+14155550123", from_="Shop", message="Hi")
    except InternalServerError as exc:
        assert exc.may_have_been_sent
    else:
        raise AssertionError("the 500 was not raised")
