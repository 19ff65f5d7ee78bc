"""Property configuration: one validated document per hotel.

The field names are part of the user-facing format (README.md, examples/demo-properties.yaml). Locally the
runner reads a JSON or YAML list of them; on AWS each property's document lives in SSM Parameter Store
(without secrets) and its secrets in Secrets Manager, merged and validated on first use and cached.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from pms_connector.errors import ConfigError

PROPERTY_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_NAMED_FIELD = re.compile(r"([a-z_]+): (.*)", re.DOTALL)

# Where the secrets of a property document live: moved to Secrets Manager, merged back on load.
SECRET_FIELDS: tuple[tuple[str, str], ...] = (
    ("httppms", "password"),
    ("httppms", "token"),
    ("ingest", "api_key"),
    ("ucm", "api_password"),
    ("ucm", "pms_password"),
    ("pms_server", "password"),
    ("pms_server", "token"),
)


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone '{value}'") from None
    return value


class _Section(BaseModel):
    # Unknown keys are refused so a typo in a config is caught at load, not ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttppmsSettings(_Section):
    auth: Literal["md5", "basic", "token"]
    user: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    md5_window_seconds: Annotated[int, Field(ge=10, le=86_400)] = 300
    delivery: Literal["remove", "confirm"] = "remove"
    archive_days: Annotated[int, Field(ge=1, le=365)] = 7
    # Records pmslink never fetches expire after this many days (plus archive_days), so a property
    # whose pmslink is gone for good does not keep growing its queue.
    queue_retention_days: Annotated[int, Field(ge=1, le=365)] = 30

    @model_validator(mode="after")
    def _credentials_for_auth(self) -> HttppmsSettings:
        if self.auth in ("md5", "basic"):
            if not self.user:
                raise ValueError(f"user: required when auth is '{self.auth}'")
            if not self.password or not self.password.get_secret_value():
                raise ValueError(f"password: required when auth is '{self.auth}'")
        if self.auth == "token" and (not self.token or len(self.token.get_secret_value()) < 8):
            raise ValueError("token: required (8 characters or more) when auth is 'token'")
        return self


def _check_api_key(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < 16:
        raise ValueError("must be 16 characters or more")
    return value


class IngestSettings(_Section):
    api_key: Annotated[SecretStr, AfterValidator(_check_api_key)]


class CheckoutSettings(_Section):
    """Express checkout (CHECKOUT request): decline by default, with a message to show the guest."""

    policy: Literal["decline", "accept"] = "decline"
    decline_message: str = "Express checkout is not available. Please visit the reception desk."
    accept_message: str = "Your checkout request has been received. We hope you enjoyed your stay."


class BillingSettings(_Section):
    notes: str = "Taxes included"
    charge_retention_days: Annotated[int, Field(ge=1, le=3650)] = 90


class PrivacySettings(_Section):
    guest_data_days: Annotated[int, Field(ge=1, le=3650)] = 30  # booking state expires this long after checkout


class UcmSettings(_Section):
    """How to reach and program the property's Grandstream UCM through its PMS API (HTTPS, old API)."""

    base_url: Annotated[str, StringConstraints(pattern=r"^https?://[^/\s]+$")]  # https://10.1.2.3:8089
    # HTTPS API Settings (Old): the Digest user of the connection.
    api_user: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    api_password: SecretStr
    # PMS > Basic Settings: token = MD5(pms_user + pms_password).
    pms_user: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    pms_password: SecretStr
    token_case: Literal["upper", "lower"] = "upper"  # noqa: S105 - a letter case, not a secret
    ca_pem: str | None = None  # PEM of the CA (or self-signed certificate) the UCM's certificate chains to
    verify_tls: bool = True  # false is an explicit, logged choice
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 3.0
    read_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 8.0
    date_format: str = "%Y/%m/%d %H:%M"  # the guide's check-in example; "%Y%m%d" as in its update example
    name_max_length: Annotated[int, Field(ge=1, le=128)] = 32
    cos_map: dict[str, Annotated[int, Field(ge=1, le=4)]] = {}  # cos_pbx -> UCM call permission 1..4
    cos_checkin: Annotated[int, Field(ge=1, le=4)] = 4  # checking in removes all restrictions (spec default)
    language_map: dict[str, str] = {}  # ISO 639-1 -> UCM language code (default: upper case, "en" -> "EN")
    rooms: dict[str, str] = {}  # room -> UCM address/extension (default: the room itself)
    # Optional check-in fields of the guide. cidnumber: the main guest's mobile number (digits, leading +),
    # sent only when the hotel wants it on the PBX; credit: the call credit each check-in starts with.
    send_cidnumber: bool = False
    credit: Annotated[int, Field(ge=0, le=99_999_999)] | None = None
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8  # then the command is parked

    def address(self, room: str) -> str:
        return self.rooms.get(room, room)


class PmsServerSettings(_Section):
    """Polling mode: a PMS that serves the HTTPPMS API itself; the connector polls it (polling.py)."""

    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s/?#@]+(:\d+)?(/[^\s?#]*)?$", max_length=500)]
    auth: Literal["md5", "basic", "token"]
    user: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    poll_interval_seconds: Annotated[int, Field(ge=2, le=50)] = 10
    timeout_seconds: Annotated[int, Field(ge=1, le=20)] = 5

    @model_validator(mode="after")
    def _credentials_for_auth(self) -> PmsServerSettings:
        if self.auth in ("md5", "basic") and (not self.user or not self.password):
            raise ValueError(f"user: user and password are required when auth is '{self.auth}'")
        if self.auth == "token" and not self.token:
            raise ValueError("token: required when auth is 'token'")
        return self


SNS_TOPIC_ARN_PATTERN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$"


class WakeupSettings(_Section):
    """Wake-up supervision: the UCM rings the guest; the connector checks it was programmed in time."""

    # Minutes before the wake-up by which the UCM must have confirmed it; else an alert to the front desk.
    at_risk_lead_minutes: Annotated[int, Field(ge=1, le=180)] = 10
    # Minutes after the wake-up when its result (E: programmed and due, F: never reached the UCM) is sent.
    result_grace_minutes: Annotated[int, Field(ge=1, le=120)] = 5
    # The property's front-desk SNS topic (created by infra/property.yaml); none: metric and alarm only.
    alert_topic_arn: Annotated[str, StringConstraints(pattern=SNS_TOPIC_ARN_PATTERN)] | None = None


class PropertyConfig(_Section):
    id: Annotated[str, StringConstraints(pattern=PROPERTY_ID_PATTERN)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    timezone: Annotated[str, AfterValidator(_check_timezone)]
    httppms: HttppmsSettings
    ingest: IngestSettings
    checkout: CheckoutSettings = CheckoutSettings()
    billing: BillingSettings = BillingSettings()
    privacy: PrivacySettings = PrivacySettings()
    ucm: UcmSettings | None = None  # without it the property has no PBX to program
    wakeup: WakeupSettings = WakeupSettings()
    pms_server: PmsServerSettings | None = None  # polling mode: the PMS serves HTTPPMS, the connector polls

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def parse_property(document: Mapping[str, Any]) -> PropertyConfig:
    """Validate one property document; ConfigError names the property and the field."""
    try:
        return PropertyConfig.model_validate(document)
    except ValidationError as exc:
        pid = document.get("id") if isinstance(document, Mapping) else None
        raise ConfigError(_describe(pid, exc)) from None


def _describe(pid: object, exc: ValidationError) -> str:
    label = f"property '{pid}'" if isinstance(pid, str) and pid else "property (no id)"
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "is required"
        named = _NAMED_FIELD.match(msg) if err["type"] == "value_error" else None
        if named:  # a model validator's message starts with the field it is about
            field = f"{field}.{named[1]}" if field else named[1]
            msg = named[2]
        lines.append(f"{label}: {field}: {msg}" if field else f"{label}: {msg}")
    return "\n".join(lines)


def parse_properties(documents: Iterable[Mapping[str, Any]]) -> dict[str, PropertyConfig]:
    """Validate a list of property documents; duplicate ids are refused."""
    out: dict[str, PropertyConfig] = {}
    errors: list[str] = []
    for index, doc in enumerate(documents):
        if not isinstance(doc, Mapping):
            errors.append(f"property #{index}: must be an object")
            continue
        try:
            config = parse_property(doc)
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        if config.id in out:
            errors.append(f"property '{config.id}': id: defined twice")
        out[config.id] = config
    if errors:
        raise ConfigError("\n".join(errors))
    return out


def load_properties_file(path: str | Path) -> dict[str, PropertyConfig]:
    """Read a JSON or YAML file holding a list of property documents (or ``{"properties": [...]}``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml  # only the local runner and the CLI read YAML

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except Exception as exc:  # YAML errors; their text quotes the line, which may hold a secret
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{path}: not valid YAML: {problem}{where}") from None
    if isinstance(data, Mapping) and "properties" in data:
        data = data["properties"]
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of property documents")
    return parse_properties(data)


def split_secrets(config: PropertyConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The document without secrets (for SSM) and the secrets alone (for Secrets Manager)."""
    public = config.model_dump(mode="json", exclude_none=True)
    secrets: dict[str, Any] = {}
    for section, key in SECRET_FIELDS:
        value = getattr(getattr(config, section) or object(), key, None)
        public.get(section, {}).pop(key, None)
        if value is not None:
            secrets.setdefault(section, {})[key] = value.get_secret_value()
    return public, secrets


def merge_secrets(public: Mapping[str, Any], secrets: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of split_secrets; only the known secret fields are taken from the secret."""
    merged: dict[str, Any] = json.loads(json.dumps(public))
    for section, key in SECRET_FIELDS:
        value = secrets.get(section, {}).get(key) if isinstance(secrets.get(section), Mapping) else None
        if value is not None and isinstance(merged.get(section), dict):
            merged[section][key] = value
    return merged
