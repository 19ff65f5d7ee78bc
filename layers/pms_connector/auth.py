"""HTTPPMS authentication, exactly as the spec describes it, and the ingest API key.

- BASIC: ``Authorization: Basic base64(user:password)`` (RFC 7617).
- TOKEN: a fixed token agreed with pmslink, sent in ``usertoken``.
- MD5: ``usertoken = md5(user + datetime as YYYYMMDDHHNNSS + password)``, the datetime being the request's
  own ``datetime`` field. The spec's example: md5("user1" "20150101101112" "password1") =
  61e7c7371170a948eaf63fa578840025. A token is only accepted while that datetime is within
  ``md5_window_seconds`` of the property's local time, so a captured request cannot be replayed later.

Every secret is compared with ``hmac.compare_digest``. An unknown property is checked against a dummy secret
so its answer takes as long as a wrong password and reads the same.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pms_connector.config import HttppmsSettings, PropertyConfig
from pms_connector.errors import AuthenticationFailed, DatetimeOutsideWindow
from pms_connector.records import parse_spec_datetime

_DUMMY = "pms-connector-dummy-secret-for-constant-time"


def md5_token(user: str, stamp: str, password: str) -> str:
    """The spec's MD5 token: lower-case hex of md5(user + YYYYMMDDHHNNSS + password)."""
    digest = hashlib.md5((user + stamp + password).encode("utf-8"), usedforsecurity=False)
    return digest.hexdigest()


def md5_stamp(spec_datetime: str) -> str:
    """``2015-01-01T10:11:12`` → ``20150101101112``."""
    return parse_spec_datetime(spec_datetime).strftime("%Y%m%d%H%M%S")


def _same(given: str | None, expected: str) -> bool:
    return hmac.compare_digest((given or "").encode("utf-8"), expected.encode("utf-8"))


def authenticate_httppms(
    prop: PropertyConfig | None,
    request: Mapping[str, object],
    authorization: str | None,
    now: datetime,
) -> None:
    """Raise AuthenticationFailed unless the request carries the property's credentials.

    ``now`` is an aware datetime. With MD5 auth a correct token whose datetime is outside the window
    raises DatetimeOutsideWindow (only a holder of the password learns that much).
    """
    if prop is None:
        _same(_text(request.get("usertoken")), _DUMMY)
        raise AuthenticationFailed()
    settings = prop.httppms
    if settings.auth == "basic":
        _check_basic(settings, authorization)
    elif settings.auth == "token":
        assert settings.token is not None  # guaranteed by HttppmsSettings
        if not _same(_text(request.get("usertoken")), settings.token.get_secret_value()):
            raise AuthenticationFailed()
    else:
        _check_md5(prop, settings, request, now)


def _check_basic(settings: HttppmsSettings, authorization: str | None) -> None:
    assert settings.user is not None and settings.password is not None
    if not basic_matches(authorization, settings.user, settings.password.get_secret_value()):
        raise AuthenticationFailed()


def basic_matches(authorization: str | None, user: str, password: str) -> bool:
    """An ``Authorization: Basic`` header carrying exactly these credentials (RFC 7617), compared in
    constant time; both parts are always compared so the timing says nothing about which one was wrong."""
    scheme, _, encoded = (authorization or "").partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    given_user, sep, given_password = decoded.partition(":")
    user_ok, password_ok = _same(given_user, user), _same(given_password, password)
    return scheme.lower() == "basic" and bool(sep) and user_ok and password_ok


def _check_md5(
    prop: PropertyConfig, settings: HttppmsSettings, request: Mapping[str, object], now: datetime
) -> None:
    assert settings.user is not None and settings.password is not None
    stamp_source = _text(request.get("datetime"))
    try:
        stamp = md5_stamp(stamp_source or "")
    except ValueError:
        stamp = "00000000000000"
    expected = md5_token(settings.user, stamp, settings.password.get_secret_value())
    user_ok = _same(_text(request.get("user")), settings.user)
    token_ok = _same((_text(request.get("usertoken")) or "").lower(), expected)
    if not (user_ok and token_ok) or stamp == "00000000000000":
        raise AuthenticationFailed()
    assert stamp_source is not None
    skew = _skew_seconds(stamp_source, prop.zone, now)
    if skew > settings.md5_window_seconds:
        raise DatetimeOutsideWindow(
            f"datetime '{stamp_source}' is {int(skew)} s away from the property's local time "
            f"({now.astimezone(prop.zone).strftime('%Y-%m-%dT%H:%M:%S')} {prop.timezone}); "
            f"the MD5 token is accepted within ±{settings.md5_window_seconds} s"
        )


def _skew_seconds(spec_datetime: str, zone: ZoneInfo, now: datetime) -> float:
    """Seconds between a property-local time and now; both readings of an ambiguous (DST) hour count."""
    local = parse_spec_datetime(spec_datetime)
    return min(
        abs((local.replace(tzinfo=zone, fold=fold) - now).total_seconds()) for fold in (0, 1)
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def local_now(zone: ZoneInfo, now: datetime | None = None) -> str:
    """The property's local time in the spec's format (for clients building MD5 tokens)."""
    moment = now or datetime.now(UTC)
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")


def sign_request(prop: PropertyConfig, body: Mapping[str, object], now: datetime | None = None
                 ) -> tuple[dict[str, object], str | None]:
    """A request as pmslink would send it to this property now: the body with datetime and credentials,
    and the Authorization header for basic auth (None otherwise). For tools and demos, not the server."""
    signed: dict[str, object] = {"datetime": local_now(prop.zone, now), **body, "property": prop.id}
    settings = prop.httppms
    if settings.auth == "md5" and settings.user and settings.password:
        signed["user"] = settings.user
        stamp = md5_stamp(str(signed["datetime"]))
        signed["usertoken"] = md5_token(settings.user, stamp, settings.password.get_secret_value())
    elif settings.auth == "token" and settings.token:
        signed["usertoken"] = settings.token.get_secret_value()
    elif settings.user and settings.password:
        credentials = f"{settings.user}:{settings.password.get_secret_value()}".encode()
        return signed, "Basic " + base64.b64encode(credentials).decode("ascii")
    return signed, None


def check_ingest_key(prop: PropertyConfig | None, authorization: str | None) -> None:
    """``Authorization: Bearer <api_key>`` for the PMS ingest API; unknown property reads the same."""
    scheme, _, key = (authorization or "").partition(" ")
    expected = prop.ingest.api_key.get_secret_value() if prop else _DUMMY
    ok = _same(key.strip(), expected)
    if prop is None or scheme.lower() != "bearer" or not ok:
        raise AuthenticationFailed("missing or invalid ingest API key")


__all__ = [
    "authenticate_httppms",
    "check_ingest_key",
    "local_now",
    "md5_stamp",
    "md5_token",
    "sign_request",
]
