"""Every non-2xx status maps to its error class, whatever the body looks like."""

from __future__ import annotations

from typing import Any

import pytest
import respx

from ovo_async import (
    APIError,
    AsyncOVOClient,
    InternalServerError,
    OVOError,
)

from .conftest import STATUS_CLASSES

TO = "+14155550123"


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
async def test_status_maps_to_class_with_fields(
    api: respx.MockRouter, status: int, cls: type[APIError]
) -> None:
    body = {
        "error": {
            "code": "invalid_parameter",
            "message": "to is not reachable",
            "param": "to",
            "request_id": "req_abc",
        }
    }
    api.get("/sms/sm_1").respond(status, json=body)
    async with AsyncOVOClient(api_key="k", max_retries=0) as client:
        with pytest.raises(APIError) as info:
            await client.sms.retrieve("sm_1")
    err = info.value
    assert type(err) is cls
    assert isinstance(err, OVOError)
    assert (err.status_code, err.code, err.param, err.request_id) == (
        status,
        "invalid_parameter",
        "to",
        "req_abc",
    )
    assert err.message == "to is not reachable"
    assert err.body == body and err.response is not None
    assert err.response.status_code == status
    assert "req_abc" in str(err) and str(status) in str(err)


@pytest.mark.parametrize(
    ("kwargs", "message", "body"),
    [
        (
            {"text": "<html><h1>502 Bad Gateway</h1></html>"},
            "Bad Gateway",
            "<html><h1>502 Bad Gateway</h1></html>",
        ),
        ({}, "Bad Gateway", ""),
        ({"json": {"detail": "upstream"}}, "Bad Gateway", {"detail": "upstream"}),
        ({"json": ["x"]}, "Bad Gateway", ["x"]),
        (
            {"json": {"error": "gateway exploded"}},
            "gateway exploded",
            {"error": "gateway exploded"},
        ),
        ({"json": {"error": {"code": 5}}}, "Bad Gateway", {"error": {"code": 5}}),
    ],
)
async def test_odd_error_bodies_still_give_the_status_class(
    api: respx.MockRouter, kwargs: dict[str, Any], message: str, body: Any
) -> None:
    api.get("/sms/sm_1").respond(502, headers={"X-Request-Id": "req_hdr"}, **kwargs)
    async with AsyncOVOClient(api_key="k", max_retries=0) as client:
        with pytest.raises(InternalServerError) as info:
            await client.sms.retrieve("sm_1")
    assert info.value.message == message
    assert info.value.body == body
    assert info.value.request_id == "req_hdr"
    assert info.value.status_code == 502
