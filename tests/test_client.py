"""Client construction, configuration from the environment, lifecycle and redaction."""

from __future__ import annotations

import gc
import logging
import pickle
import traceback
import warnings

import httpx
import pytest
import respx

from ovo_async import AsyncOVOClient, OVOError, RetryPolicy, ValidationError

from .conftest import API_KEY, BASE_URL, sent_json


def test_missing_key_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVO_API_KEY", raising=False)
    with pytest.raises(OVOError, match="OVO_API_KEY"):
        AsyncOVOClient()


def test_empty_key_is_refused() -> None:
    with pytest.raises(OVOError, match="OVO_API_KEY"):
        AsyncOVOClient(api_key="")


def test_key_and_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVO_API_KEY", "env-key")
    monkeypatch.setenv("OVO_BASE_URL", "http://127.0.0.1:9/v1")
    client = AsyncOVOClient()
    assert client.base_url == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize(
    "url", ["http://localhost:8080/v1", "http://127.0.0.2/v1", "http://[::1]:80/v1"]
)
def test_plain_http_allowed_on_loopback(url: str) -> None:
    assert AsyncOVOClient(api_key=API_KEY, base_url=url).base_url == url


@pytest.mark.parametrize(
    "url", ["http://api.ovocommunications.com/v1", "http://10.0.0.1/v1", "ftp://x/v1", "nope"]
)
def test_non_https_base_url_refused_at_construction(url: str) -> None:
    with pytest.raises(OVOError, match="base_url"):
        AsyncOVOClient(api_key=API_KEY, base_url=url)


def test_bad_default_from_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="default_from"):
        AsyncOVOClient(api_key=API_KEY, default_from="way too long sender")


def test_default_headers_cannot_replace_auth() -> None:
    with pytest.raises(OVOError, match="Authorization"):
        AsyncOVOClient(api_key=API_KEY, default_headers={"Authorization": "Bearer other"})


def test_http_client_and_transport_are_exclusive() -> None:
    with pytest.raises(OVOError, match="either"):
        AsyncOVOClient(
            api_key=API_KEY,
            http_client=httpx.AsyncClient(),
            transport=httpx.MockTransport(lambda r: httpx.Response(200)),
        )


@pytest.mark.parametrize("timeout", [0, -1, "5", None])
def test_bad_timeout_refused(timeout: object) -> None:
    with pytest.raises(OVOError, match="timeout"):
        AsyncOVOClient(api_key=API_KEY, timeout=timeout)  # type: ignore[arg-type]


def test_float_timeout_applies_to_each_phase() -> None:
    client = AsyncOVOClient(api_key=API_KEY, timeout=2.5)
    assert client.timeout == httpx.Timeout(2.5)
    assert AsyncOVOClient(api_key=API_KEY).timeout == httpx.Timeout(30.0, connect=5.0)


def test_max_retries_shortcut_and_policy() -> None:
    assert AsyncOVOClient(api_key=API_KEY).retry == RetryPolicy()
    client = AsyncOVOClient(api_key=API_KEY, max_retries=5, retry=RetryPolicy(jitter=False))
    assert client.retry.max_retries == 5 and client.retry.jitter is False
    with pytest.raises(OVOError, match="max_retries"):
        AsyncOVOClient(api_key=API_KEY, max_retries=-1)


def test_key_never_in_repr_str_or_vars() -> None:
    client = AsyncOVOClient(api_key=API_KEY, default_from="OVO")
    texts = [
        repr(client),
        str(client),
        repr(vars(client)),
        repr(client.sms),
        repr(vars(client.sms)),
    ]
    texts += [repr(vars(client._transport)), repr(client.with_options(timeout=3))]
    for text in texts:
        assert API_KEY not in text
    with pytest.raises(TypeError):
        pickle.dumps(client._transport.api_key)


async def test_key_never_in_exception_text_traceback_or_logs(
    api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.post("/sms/send").respond(
        401, json={"error": {"code": "unauthorized", "message": "bad key"}}
    )
    async with AsyncOVOClient(api_key=API_KEY) as client:
        with pytest.raises(OVOError) as info:
            await client.sms.send(to="+14155550123", from_="OVO", message="hi")
    text = "".join(traceback.format_exception(info.value))
    assert "bad key" in text
    assert API_KEY not in text
    assert API_KEY not in repr(info.value) and API_KEY not in str(info.value)
    assert caplog.records, "expected the per-request DEBUG line"
    assert all(API_KEY not in r.getMessage() for r in caplog.records)
    assert all("Bearer" not in r.getMessage() for r in caplog.records)


async def test_debug_line_per_request(
    api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ovo_async")
    api.post("/sms/send").respond(201, json=sent_json(), headers={"X-Request-Id": "req_42"})
    async with AsyncOVOClient(api_key=API_KEY) as client:
        await client.sms.send(to="+14155550123", from_="OVO", message="hi")
    lines = [r for r in caplog.records if r.name == "ovo_async"]
    assert len(lines) == 1
    line = lines[0].getMessage()
    assert lines[0].levelno == logging.DEBUG
    assert "POST /sms/send -> 201" in line and "req_42" in line and " ms" in line


async def test_closed_client_raises_clear_error(api: respx.MockRouter) -> None:
    client = AsyncOVOClient(api_key=API_KEY)
    await client.aclose()
    await client.aclose()  # twice is harmless
    with pytest.raises(OVOError, match="closed"):
        await client.sms.send(to="+14155550123", from_="OVO", message="hi")
    assert not api.calls


async def test_caller_http_client_is_never_closed(api: respx.MockRouter) -> None:
    api.post("/sms/send").respond(201, json=sent_json())
    http = httpx.AsyncClient()
    async with AsyncOVOClient(api_key=API_KEY, http_client=http) as client:
        await client.sms.send(to="+14155550123", from_="OVO", message="hi")
    assert not http.is_closed
    await http.aclose()


async def test_redirects_never_followed_even_on_caller_client(api: respx.MockRouter) -> None:
    api.post("/sms/send").respond(307, headers={"Location": "https://evil.example/steal"})
    evil = respx.post("https://evil.example/steal").respond(201, json=sent_json())
    http = httpx.AsyncClient(follow_redirects=True)
    async with AsyncOVOClient(api_key=API_KEY, http_client=http) as client:
        from ovo_async import APIError

        with pytest.raises(APIError) as info:
            await client.sms.send(to="+14155550123", from_="OVO", message="hi")
    assert info.value.status_code == 307
    assert "not followed" in str(info.value)
    assert not evil.called
    await http.aclose()


async def test_with_options_shares_pool_and_closing_it_keeps_parent_open(
    api: respx.MockRouter,
) -> None:
    api.post("/sms/send").respond(201, json=sent_json())
    async with AsyncOVOClient(api_key=API_KEY) as client:
        fast = client.with_options(timeout=1.0, max_retries=0)
        assert fast._transport.pool is client._transport.pool
        assert fast.timeout == httpx.Timeout(1.0) and fast.retry.max_retries == 0
        assert client.retry.max_retries == 2
        await fast.sms.send(to="+14155550123", from_="OVO", message="hi")
        await fast.aclose()
        await client.sms.send(to="+14155550123", from_="OVO", message="hi")
    with pytest.raises(OVOError, match="closed"):
        await fast.sms.send(to="+14155550123", from_="OVO", message="hi")


def test_unclosed_client_warns_nothing_at_gc() -> None:
    """No __del__ that needs a loop: dropping an unclosed client is silent."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = AsyncOVOClient(api_key=API_KEY)
        del client
        gc.collect()


def test_base_url_default() -> None:
    assert AsyncOVOClient(api_key=API_KEY).base_url == BASE_URL
