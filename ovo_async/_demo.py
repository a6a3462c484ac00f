"""The demo: a FakeOVO on loopback, real sockets, and the SDK's main calls."""

from __future__ import annotations

import time

import anyio

from ._client import AsyncOVOClient
from ._errors import ValidationError
from .models import MessageStatus, SMSRequest

API_KEY = "sk_demo_key"


async def _demo(base_url: str) -> list[tuple[str, str]]:
    summary: list[tuple[str, str]] = []
    async with AsyncOVOClient(api_key=API_KEY, base_url=base_url, default_from="OVO") as client:
        sent = await client.sms.send(to="+14155550123", message="Hello from ovo-async!")
        print(f"  sent one SMS            {sent.message_id}  status={sent.status}")
        summary.append(("send", f"{sent.message_id} ({sent.status})"))

        batch = await client.sms.batch(
            [
                SMSRequest(to="+14155550124", message="Your order has shipped"),
                {"to": "+447700900123", "message": "Your table is ready"},
                {"to": "+33612345678", "from": "Bakery", "message": "Fresh bread at 7"},
            ]
        )
        print(f"  sent a batch of three   {batch.batch_id}  {batch.successful} accepted")
        summary.append(("batch", f"{batch.successful}/{batch.total_messages} accepted"))

        started = time.monotonic()
        message = await client.sms.retrieve(sent.message_id)
        seen = [str(message.status)]
        while message.status not in (MessageStatus.DELIVERED, MessageStatus.FAILED):
            await anyio.sleep(0.1)
            message = await client.sms.retrieve(sent.message_id)
            if str(message.status) != seen[-1]:
                seen.append(str(message.status))
        took = time.monotonic() - started
        print(f"  retrieved until final   {' -> '.join(seen)} in {took:.1f} s")
        summary.append(("retrieve", " -> ".join(seen)))

        try:
            await client.sms.send(to="0800 NOT A NUMBER", message="never sent")
        except ValidationError as exc:
            print(f"  handled a bad number    ValidationError({exc.field!r}): nothing was sent")
            summary.append(("validation", f"{exc.field} rejected before any request"))
    return summary


def run() -> int:
    """Start the fake on loopback, run the demo against it, print a summary."""
    import importlib.util
    import sys

    from .testing import FakeOVO

    if importlib.util.find_spec("uvicorn") is None:
        sys.stderr.write(
            "ovo demo: serving the fake OVO API needs the fake extra: "
            "pip install 'ovo-async[fake]'\n"
        )
        return 2

    fake = FakeOVO(sent_after=0.3, delivered_after=0.8)
    print("ovo-async demo: a fake OVO API on loopback; no real SMS is sent.")
    with fake.serve() as base_url:
        print(f"  fake OVO server         {base_url}")
        summary = anyio.run(_demo, base_url)
    print("\nSummary")
    for step, result in summary:
        print(f"  {step:<11} {result}")
    print(f"  server saw  {len(fake.requests)} requests, stored {len(fake.messages)} messages")
    print("All steps succeeded.")
    return 0
