"""Phone numbers as people type them, made E.164 (the `phone` extra: phonenumbers).

`+1 415 555 0123`, `(415) 555-0123` with region `US`, `07700 900123` with `GB`: all
become `+...` E.164. A number already in E.164 needs no extra. A number passes when it
is valid, or possible as a mobile or fixed line (the right length for its country):
not only assigned ranges, since carriers' ranges change faster than any library's
metadata and reserved test ranges (such as the UK's 07700 900xxx) must still work.
"""

from __future__ import annotations

from typing import Any

from ._errors import ValidationError
from ._validation import E164

__all__ = ["check_region", "normalize_number"]

#: Longer than any phone number, however formatted.
MAX_RAW = 64
INSTALL = "pip install 'ovo-async[phone]'"


def _phonenumbers() -> Any:
    try:
        import phonenumbers
    except ImportError:
        return None
    return phonenumbers


def check_region(region: Any, *, field: str = "region") -> str | None:
    """None, or a two-letter region code phonenumbers knows (`US`, `GB`, `DE`...)."""
    if region is None:
        return None
    if not isinstance(region, str) or len(region) != 2 or not region.isascii():
        raise ValidationError(
            field, f"must be a two-letter region code such as 'US', got {region!r}"
        )
    region = region.upper()
    lib = _phonenumbers()
    if lib is None:
        raise ValidationError(field, f"normalising numbers needs the phone extra: {INSTALL}")
    if region not in lib.SUPPORTED_REGIONS:
        raise ValidationError(field, f"{region!r} is not a region code phonenumbers knows")
    return str(region)


def normalize_number(raw: str, region: str | None = None, *, field: str = "to") -> str:
    """`raw` as an E.164 number, reading national formats in `region` (ISO 3166 code).

    A bad or impossible number is a `ValidationError` on `field` that says why.
    """
    if not isinstance(raw, str):
        raise ValidationError(field, f"must be a string, got {type(raw).__name__}")
    if E164.fullmatch(raw):
        return raw
    shown = repr(raw) if len(raw) <= 40 else repr(raw[:37] + "...")
    if len(raw) > MAX_RAW or not raw.isprintable():
        raise ValidationError(field, f"{shown} is not a phone number")
    region = check_region(region, field="region")
    lib = _phonenumbers()
    if lib is None:
        raise ValidationError(
            field,
            f"{shown} is not E.164 (+ and country code, such as +14155550123); to send to "
            f"numbers as people write them, install the phone extra: {INSTALL}",
        )
    if region is None and not raw.lstrip().startswith("+"):
        raise ValidationError(
            field,
            f"{shown} is a national number: give its region (region='US', or the client's "
            "default_region) or write it with + and its country code",
        )
    try:
        number = lib.parse(raw, region)
    except lib.NumberParseException as exc:
        raise ValidationError(field, f"{shown} is not a phone number ({exc})") from None
    kinds = (lib.PhoneNumberType.MOBILE, lib.PhoneNumberType.FIXED_LINE)
    possible = lib.ValidationResult.IS_POSSIBLE  # not IS_POSSIBLE_LOCAL_ONLY: no area code
    # Possible as a whole phone line, not merely as a local or short number.
    if not lib.is_valid_number(number) and not any(
        lib.is_possible_number_for_type_with_reason(number, kind) == possible for kind in kinds
    ):
        where = lib.region_code_for_number(number) or region or "its country"
        raise ValidationError(field, f"{shown} has too few or too many digits for {where}")
    e164 = str(lib.format_number(number, lib.PhoneNumberFormat.E164))
    if not E164.fullmatch(e164):  # pragma: no cover - phonenumbers' E.164 always fits
        raise ValidationError(field, f"{shown} does not make an E.164 number")
    return e164
