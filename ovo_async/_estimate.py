"""What a campaign will cost before it is sent: messages, segments, encodings, bad rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ._errors import ValidationError
from ._phone import check_region
from ._requests import make_request
from ._segments import count_segments
from .models import SMSRequest

__all__ = ["CampaignEstimate", "estimate"]

#: How many invalid inputs an estimate keeps (the count covers them all).
KEPT_ERRORS = 100
#: Sender used for inputs without one: the estimate is about cost, not about senders.
_ANY_SENDER = "OVO"


@attrs.frozen(kw_only=True)
class CampaignEstimate:
    """The cost of a campaign, computed without sending anything.

    `messages` valid inputs cost `segments` in all, `gsm7` of them as GSM-7 and `ucs2` as
    UCS-2; `non_gsm` are the characters that forced UCS-2 (each once, in order of first
    appearance). `invalid` inputs would fail validation: `errors` holds the first
    hundred as (index, `ValidationError`).
    """

    messages: int = 0
    segments: int = 0
    gsm7: int = 0
    ucs2: int = 0
    invalid: int = 0
    errors: tuple[tuple[int, ValidationError], ...] = ()
    non_gsm: tuple[str, ...] = ()


def estimate(
    messages: Iterable[SMSRequest | Mapping[str, Any]],
    *,
    default_region: str | None = None,
    max_segments: int | None = None,
) -> CampaignEstimate:
    """Validate and count a campaign, as `send_many` would take it, reading it lazily.

    `default_region` reads national numbers (the `phone` extra) and `max_segments`
    counts longer messages as invalid, as the client's options of the same names do.
    """
    region = check_region(default_region, field="default_region")
    valid = segments = gsm7 = ucs2 = invalid = 0
    errors: list[tuple[int, ValidationError]] = []
    non_gsm: dict[str, None] = {}
    for index, item in enumerate(messages):
        try:
            request = make_request(
                item, default_from=_ANY_SENDER, max_segments=max_segments, region=region
            )
        except ValidationError as exc:
            invalid += 1
            if len(errors) < KEPT_ERRORS:
                errors.append((index, exc))
            continue
        info = count_segments(request.message)
        valid += 1
        segments += info.segments
        if info.encoding == "GSM-7":
            gsm7 += 1
        else:
            ucs2 += 1
            non_gsm.update(dict.fromkeys(info.non_gsm))
    return CampaignEstimate(
        messages=valid,
        segments=segments,
        gsm7=gsm7,
        ucs2=ucs2,
        invalid=invalid,
        errors=tuple(errors),
        non_gsm=tuple(non_gsm),
    )
