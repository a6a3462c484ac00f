"""How many SMS segments a text costs, exactly as GSM 03.38 and carriers count them.

GSM-7 when every character is in the default alphabet or its extension table (an
extension character is an escape plus a septet: 2 septets, never split across segments);
else UCS-2, counted in UTF-16 code units (a character outside the BMP is a surrogate
pair: 2 units, never split). One segment holds 160 septets or 70 units; a longer text is
sent as parts of 153 septets or 67 units (the user data header takes the rest).
"""

from __future__ import annotations

from typing import Literal

import attrs

from ._errors import ValidationError

__all__ = ["SegmentInfo", "count_segments"]

#: The GSM 03.38 default alphabet, 1 septet each (0x1B, the escape, is not a character).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The extension table: an escape and a septet, 2 septets each.
GSM_EXTENDED = frozenset("\f^{}\\[~]|€")

SINGLE = {"GSM-7": 160, "UCS-2": 70}
PART = {"GSM-7": 153, "UCS-2": 67}


@attrs.frozen(kw_only=True)
class SegmentInfo:
    """What a text costs: `segments`, its `encoding`, `units` (septets for GSM-7, UTF-16
    code units for UCS-2) and `non_gsm`, the characters that forced UCS-2 (each once, in
    order of appearance; empty for GSM-7)."""

    encoding: Literal["GSM-7", "UCS-2"]
    segments: int
    units: int
    non_gsm: tuple[str, ...] = ()


def _costs(text: str) -> tuple[Literal["GSM-7", "UCS-2"], list[int], tuple[str, ...]]:
    non_gsm: dict[str, None] = {}
    septets: list[int] = []
    for char in text:
        if char in GSM_BASIC:
            septets.append(1)
        elif char in GSM_EXTENDED:
            septets.append(2)
        else:
            non_gsm[char] = None
    if not non_gsm:
        return "GSM-7", septets, ()
    units = [2 if ord(char) > 0xFFFF else 1 for char in text]
    return "UCS-2", units, tuple(non_gsm)


def count_segments(text: str) -> SegmentInfo:
    """Count the segments of `text` (see the module's rules). `ValidationError` for
    something that is not text: not a `str`, or a lone surrogate."""
    if not isinstance(text, str):
        raise ValidationError("message", f"must be a string, got {type(text).__name__}")
    if any(0xD800 <= ord(char) <= 0xDFFF for char in text):
        raise ValidationError("message", "holds a lone surrogate: not valid text")
    encoding, costs, non_gsm = _costs(text)
    units = sum(costs)
    if units <= SINGLE[encoding]:
        return SegmentInfo(encoding=encoding, segments=1, units=units, non_gsm=non_gsm)
    part, segments, used = PART[encoding], 1, 0
    for cost in costs:
        if used + cost > part:  # an escape pair or surrogate pair is never split
            segments, used = segments + 1, 0
        used += cost
    return SegmentInfo(encoding=encoding, segments=segments, units=units, non_gsm=non_gsm)
