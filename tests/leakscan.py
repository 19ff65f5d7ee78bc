"""Nothing the connector logs may hold a secret, a token or a guest's personal data.

The scan learns the sensitive values the tests actually use, where they enter the product:
- every property configuration validated (its passwords, tokens and keys: config.SECRET_FIELDS);
- every request served by a handler (the Authorization header, body credentials such as the MD5 token);
- every record ingested (guest names, e-mail, phone, passport and ID card numbers, from the API or polled);
and it keeps every line the product's loggers write (Powertools' JSON lines, with their extra keys, and the
libraries under them: httpx, botocore). At the end of the session each line is searched for each value.

conftest.py installs one scanner for the whole session and fails the run on a leak; tests can run their
own scoped scanner to see exactly what one flow logs.
"""

from __future__ import annotations

import base64
import binascii
import html
import inspect
import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

PII_KEYS = frozenset({"name", "surname", "email", "mobile", "phone", "passport", "idcard", "identity_card",
                      "text"})  # text: the message of a MSGTXT / WMSG record, written for the guest
CREDENTIAL_KEYS = frozenset({"password", "token", "usertoken", "api_key", "key", "secret"})
MIN_LENGTH = 4  # shorter values (initials, "Li") would match ordinary words and ids
MIN_CREDENTIAL_LENGTH = 6  # "nope", "bad": wrong passwords tests send on purpose, no one's secret


@dataclass(frozen=True)
class Leak:
    kind: str
    value: str
    line: str

    def __str__(self) -> str:
        shown = self.value[:2] + "…" + self.value[-1:]  # the report itself must not leak the value
        masked = self.line.replace(self.value, f"<{self.kind}>")
        at = masked.find(f"<{self.kind}>")
        return f"{self.kind} ({shown}) logged: …{masked[max(0, at - 80):at + len(self.kind) + 82]}…"


@dataclass
class LeakScan:
    values: dict[str, str] = field(default_factory=dict)  # sensitive value (or an encoded form) -> what it is
    encoded: set[str] = field(default_factory=set)  # URL- or XML-encoded forms: matched anywhere
    lines: list[str] = field(default_factory=list)
    paused: bool = False  # while a test plants leaks on purpose (tests/unit/test_leakscan.py)

    def add(self, value: Any, kind: str, min_length: int = MIN_LENGTH) -> None:
        if not isinstance(value, str) or len(value.strip()) < min_length:
            return
        value = value.strip()
        self.values.setdefault(value, kind)
        # As it would appear in a URL query (the UCM's GET API) or an XML document.
        for form in (urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value), html.escape(value)):
            if form != value:
                self.values.setdefault(form, kind)
                self.encoded.add(form)

    def harvest_record(self, data: Any, kind: str = "guest", depth: int = 0) -> None:
        """PII and credentials anywhere in a record or request body (nested objects and lists too; hostile
        bodies nested thousands deep are read to a sane depth)."""
        if depth > 20:
            return
        if isinstance(data, Mapping):
            for key, value in data.items():
                lowered = str(key).lower()
                if lowered in PII_KEYS:
                    self.add(value, f"{kind} {lowered}")
                elif lowered in CREDENTIAL_KEYS:
                    self.add(value, f"request {lowered}", MIN_CREDENTIAL_LENGTH)
                else:
                    self.harvest_record(value, kind, depth + 1)
        elif isinstance(data, list):
            for item in data:
                self.harvest_record(item, kind, depth + 1)

    def harvest_config(self, config: Any) -> None:
        from pms_connector.config import SECRET_FIELDS

        for section, key in SECRET_FIELDS:
            secret = getattr(getattr(config, section, None), key, None)
            if secret is not None:
                self.add(secret.get_secret_value(), f"{section}.{key} of {config.id}")
        if getattr(config, "ucm", None) is not None:
            from pms_connector.ucm.client import ucm_token

            self.add(ucm_token(config.ucm), f"ucm token of {config.id}")  # derived, sent on every UCM call

    def harvest_authorization(self, header: str | None) -> None:
        if not header or " " not in header:
            return
        scheme, credential = header.split(" ", 1)
        self.add(credential, f"{scheme.lower()} credential", MIN_CREDENTIAL_LENGTH)
        if scheme.lower() == "basic":
            try:
                _, _, password = base64.b64decode(credential, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return
            self.add(password, "basic password", MIN_CREDENTIAL_LENGTH)

    def leaks(self) -> list[Leak]:
        found: list[Leak] = []
        if not self.values:
            return found
        # One pass per line with an alternation of every value (longest first), instead of values x lines.
        ordered = sorted(self.values, key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(v) for v in ordered))
        seen: set[str] = set()
        for line in self.lines:
            for match in pattern.finditer(line):
                value = match.group(0)
                if value not in seen and (value in self.encoded or _whole(line, match)):
                    seen.add(value)
                    found.append(Leak(self.values[value], value, line))
        return found


def _whole(line: str, match: re.Match[str]) -> bool:
    """A value of letters or digits only counts as a whole word: "Rosa" leaks in '"guest": "Rosa"' but not in
    "Rosario", and passport "1234567890" not inside account id "123456789012"."""
    value = match.group(0)
    if not value.isalnum():
        return True
    before = line[match.start() - 1] if match.start() else " "
    after = line[match.end()] if match.end() < len(line) else " "
    return not (before.isalnum() or after.isalnum())


class _Capture(logging.Handler):
    def __init__(self, scan: LeakScan, formatter: logging.Formatter | None) -> None:
        super().__init__(level=logging.DEBUG)
        self.scan = scan
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        if self.scan.paused:
            return
        try:
            line = self.format(record)
        except Exception:  # a record that cannot be formatted is kept raw, never dropped
            line = record.getMessage()
        # What a formatter may leave out (a library's arguments, extra keys) is scanned too.
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        self.scan.lines.append(f"{line} {json.dumps(extras, default=str)} {record.args!r}")


_STANDARD = frozenset(vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None))) | {"message", "asctime"}


def _wrap(owner: Any, name: str, after: Callable[[tuple[Any, ...], dict[str, Any], Any], None]) -> Callable[[], None]:
    """Call ``after(args, kwargs, result)`` after each call of ``owner.name``; returns the undo."""
    own = name in vars(owner)
    descriptor = inspect.getattr_static(owner, name)
    is_classmethod = isinstance(descriptor, classmethod)
    function = descriptor.__func__ if is_classmethod else descriptor

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        after(args, kwargs, result)
        return result

    setattr(owner, name, classmethod(wrapper) if is_classmethod else wrapper)
    return (lambda: setattr(owner, name, descriptor)) if own else (lambda: delattr(owner, name))


@contextmanager
def scanning(scan: LeakScan | None = None) -> Iterator[LeakScan]:
    """Learn sensitive values and capture log lines while the block runs."""
    from pms_connector import api
    from pms_connector.config import PropertyConfig
    from pms_connector.observability import logger as product_logger
    from pms_connector.state import StateStore

    scan = scan or LeakScan()

    def on_config(args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        scan.harvest_config(result)

    def on_ingest(args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        records = kwargs.get("records", args[2] if len(args) > 2 else [])
        scan.harvest_record(records)

    def on_request(args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        event = args[0] if args else kwargs.get("event", {})
        headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
        scan.harvest_authorization(headers.get("authorization"))
        body = event.get("body")
        if isinstance(body, str) and event.get("isBase64Encoded"):
            try:
                body = base64.b64decode(body).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                body = None
        if isinstance(body, str):
            try:
                scan.harvest_record(json.loads(body), kind="request")
            except RecursionError:
                pass  # nested too deeply to hold a credential the product would read
            except ValueError:
                for key, value in re.findall(r"<(\w+)>([^<]{4,200})</\1>", body):  # XML bodies
                    scan.harvest_record({key: value}, kind="request")

    undo = [_wrap(PropertyConfig, "model_validate", on_config),
            _wrap(StateStore, "ingest", on_ingest),
            _wrap(api, "serve", on_request)]
    product = logging.getLogger(product_logger.name)
    formatter = product.handlers[0].formatter if product.handlers else None
    handlers = [(product, _Capture(scan, formatter)),
                (logging.getLogger(), _Capture(scan, logging.Formatter("%(name)s %(levelname)s %(message)s")))]
    for owner, handler in handlers:
        owner.addHandler(handler)
    try:
        yield scan
    finally:
        for owner, handler in handlers:
            owner.removeHandler(handler)
        for restore in reversed(undo):
            restore()
