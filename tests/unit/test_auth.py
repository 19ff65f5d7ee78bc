"""HTTPPMS authentication (BASIC, TOKEN, MD5 with replay window) and the ingest API key."""

from __future__ import annotations

import base64
import contextlib
from datetime import UTC, datetime
from typing import Any

import pytest

from pms_connector.auth import (
    authenticate_httppms,
    check_ingest_key,
    local_now,
    md5_stamp,
    md5_token,
)
from pms_connector.config import PropertyConfig, parse_property
from pms_connector.errors import AuthenticationFailed, DatetimeOutsideWindow

SPEC_TOKEN = "61e7c7371170a948eaf63fa578840025"


def prop(auth: str = "md5", **httppms: Any) -> PropertyConfig:
    settings = {"auth": auth, "user": "user1", "password": "password1", "token": "12345-12345-12345-12345"}
    settings.update(httppms)
    return parse_property({"id": "myhotel", "name": "My Hotel", "timezone": "Europe/Madrid",
                           "httppms": settings, "ingest": {"api_key": "k" * 32}})


# 2015-01-01T10:11:12 in Madrid (CET, UTC+1) is 09:11:12 UTC.
SPEC_MOMENT = datetime(2015, 1, 1, 9, 11, 12, tzinfo=UTC)
SPEC_REQUEST = {"datetime": "2015-01-01T10:11:12", "user": "user1", "usertoken": SPEC_TOKEN,
                "action": "GET_REQUEST", "property": "myhotel"}


def test_the_specs_md5_example_gives_the_specs_token() -> None:
    assert md5_token("user1", "20150101101112", "password1") == SPEC_TOKEN
    assert md5_stamp("2015-01-01T10:11:12") == "20150101101112"


def test_given_the_specs_example_request_at_its_own_time_when_authenticated_then_it_passes() -> None:
    authenticate_httppms(prop(), SPEC_REQUEST, None, SPEC_MOMENT)


def test_given_an_upper_case_md5_token_then_it_is_accepted() -> None:
    authenticate_httppms(prop(), {**SPEC_REQUEST, "usertoken": SPEC_TOKEN.upper()}, None, SPEC_MOMENT)


@pytest.mark.parametrize(
    "change",
    [
        {"usertoken": "0" * 32},
        {"user": "user2"},
        {"usertoken": None},
        {"user": None},
        {"datetime": "2015-01-01T10:11:13"},  # token was made for another second
        {"datetime": "not a date"},
        {"usertoken": 12345},
    ],
    ids=["wrong-token", "wrong-user", "no-token", "no-user", "other-second", "bad-datetime", "token-not-string"],
)
def test_given_wrong_md5_credentials_then_authentication_fails(change: dict[str, Any]) -> None:
    request = {k: v for k, v in {**SPEC_REQUEST, **change}.items() if v is not None}
    with pytest.raises(AuthenticationFailed):
        authenticate_httppms(prop(), request, None, SPEC_MOMENT)


@pytest.mark.parametrize("skew_seconds", [301, -301, 86_400])
def test_given_a_valid_md5_token_outside_the_window_then_it_is_refused_as_replay(skew_seconds: int) -> None:
    now = datetime.fromtimestamp(SPEC_MOMENT.timestamp() + skew_seconds, tz=UTC)
    with pytest.raises(DatetimeOutsideWindow) as refused:
        authenticate_httppms(prop(), SPEC_REQUEST, None, now)
    assert "±300 s" in refused.value.description


@pytest.mark.parametrize("skew_seconds", [0, 299, -299])
def test_given_a_valid_md5_token_inside_the_window_then_it_passes(skew_seconds: int) -> None:
    now = datetime.fromtimestamp(SPEC_MOMENT.timestamp() + skew_seconds, tz=UTC)
    authenticate_httppms(prop(), SPEC_REQUEST, None, now)


def test_the_window_is_taken_from_the_property_config() -> None:
    now = datetime.fromtimestamp(SPEC_MOMENT.timestamp() + 100, tz=UTC)
    with pytest.raises(DatetimeOutsideWindow):
        authenticate_httppms(prop(md5_window_seconds=60), SPEC_REQUEST, None, now)


def test_the_window_is_around_the_propertys_local_time_not_utc() -> None:
    # The same wall-clock datetime from a New York property is five hours away from Madrid's.
    ny = parse_property({**prop().model_dump(mode="python"), "timezone": "America/New_York",
                         "httppms": {"auth": "md5", "user": "user1", "password": "password1"},
                         "ingest": {"api_key": "k" * 32}})
    with pytest.raises(DatetimeOutsideWindow):
        authenticate_httppms(ny, SPEC_REQUEST, None, SPEC_MOMENT)


def test_given_the_repeated_autumn_hour_then_either_reading_is_accepted() -> None:
    # Madrid 2025-10-26 02:30 happens twice (CEST then CET): a token made in the second one still passes.
    request = {"datetime": "2025-10-26T02:30:00", "user": "user1", "action": "GET_REQUEST",
               "usertoken": md5_token("user1", "20251026023000", "password1")}
    second_reading = datetime(2025, 10, 26, 1, 30, tzinfo=UTC)  # 02:30 CET
    authenticate_httppms(prop(), request, None, second_reading)


def test_given_token_auth_then_the_agreed_token_passes_and_others_fail() -> None:
    p = prop("token")
    authenticate_httppms(p, {"usertoken": "12345-12345-12345-12345"}, None, SPEC_MOMENT)
    for wrong in ("12345-12345-12345-1234", "", None):
        with pytest.raises(AuthenticationFailed):
            authenticate_httppms(p, {"usertoken": wrong}, None, SPEC_MOMENT)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_given_basic_auth_then_rfc7617_credentials_pass() -> None:
    authenticate_httppms(prop("basic"), {}, basic("user1", "password1"), SPEC_MOMENT)
    authenticate_httppms(prop("basic"), {}, "basic " + basic("user1", "password1")[6:], SPEC_MOMENT)


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic", "Basic !!!notbase64", basic("user1", "wrong"), basic("user2", "password1"),
     "Bearer " + base64.b64encode(b"user1:password1").decode(),
     "Basic " + base64.b64encode(b"user1password1").decode()],
)
def test_given_bad_basic_credentials_then_authentication_fails(header: str | None) -> None:
    with pytest.raises(AuthenticationFailed):
        authenticate_httppms(prop("basic"), {}, header, SPEC_MOMENT)


def test_given_a_password_with_a_colon_then_basic_splits_at_the_first_colon() -> None:
    p = prop("basic", password="pa:ss")
    authenticate_httppms(p, {}, basic("user1", "pa:ss"), SPEC_MOMENT)


def test_an_unknown_property_reads_exactly_like_bad_credentials() -> None:
    with pytest.raises(AuthenticationFailed) as unknown:
        authenticate_httppms(None, SPEC_REQUEST, None, SPEC_MOMENT)
    with pytest.raises(AuthenticationFailed) as wrong:
        authenticate_httppms(prop(), {**SPEC_REQUEST, "usertoken": "0" * 32}, None, SPEC_MOMENT)
    assert (unknown.value.code, unknown.value.description) == (wrong.value.code, wrong.value.description)


def test_secrets_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    from pms_connector import auth

    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    for p, request, header in ((prop(), SPEC_REQUEST, None), (prop("token"), {"usertoken": "x"}, None),
                               (prop("basic"), {}, basic("user1", "x")), (None, SPEC_REQUEST, None)):
        with contextlib.suppress(AuthenticationFailed):
            authenticate_httppms(p, request, header, SPEC_MOMENT)
    # Every path compared its secret through hmac.compare_digest, never with ==.
    assert len(seen) >= 6


def test_ingest_key_is_a_bearer_token() -> None:
    p = prop()
    check_ingest_key(p, "Bearer " + "k" * 32)
    check_ingest_key(p, "bearer " + "k" * 32)
    for header in (None, "", "k" * 32, "Bearer " + "k" * 31, "Basic " + "k" * 32):
        with pytest.raises(AuthenticationFailed):
            check_ingest_key(p, header)
    with pytest.raises(AuthenticationFailed):
        check_ingest_key(None, "Bearer " + "k" * 32)


def test_local_now_is_the_properties_wall_clock_in_spec_format() -> None:
    assert local_now(prop().zone, SPEC_MOMENT) == "2015-01-01T10:11:12"
