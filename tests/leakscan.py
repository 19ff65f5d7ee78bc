"""Nothing the connector logs may hold a secret, a token or a guest's personal data.

The scan learns the sensitive values the tests actually use, where they enter the product:
- every property configuration validated (its passwords, tokens and keys: config.SECRET_FIELDS), and every
  properties file a test hands to a local runner subprocess (read from the YAML before the runner starts);
- every request served by a handler (the Authorization header, body credentials such as the MD5 token), every
  MD5 token computed in this process (tests' and product's), and the MD5 tokens a runner subprocess can sign
  while it lives (each second of its life, for each MD5 credential of its properties file);
- every record ingested (guest names, e-mail, phone, passport and ID card numbers, from the API or polled);
and it keeps every line written: the product's loggers (Powertools' JSON lines, with their extra keys, and the
libraries under them: httpx, botocore), what each test wrote to stdout/stderr (Powertools Metrics' EMF blobs,
print()), the output of the Python subprocesses tests run, and everything a local runner subprocess prints. At
the end of the session each line is searched for each value.

The one documented exception: the banner of ``pms-connector local`` prints ready-to-paste curl commands with
valid credentials (README "Operating it"). In the banner's curl lines only, the values the banner is meant to
print are allowed: the property's own ingest key (in its ingest command), the credential of its signed
GET_REQUEST (checked against its properties file), and the demo guest (DEMO_GUEST). Anything else there,
and everything outside the banner, is a leak.

conftest.py installs one scanner for the whole session and fails the run on a leak; tests can run their
own scoped scanner to see exactly what one flow logs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import inspect
import json
import logging
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

PII_KEYS = frozenset({"name", "surname", "email", "mobile", "phone", "passport", "idcard", "identity_card",
                      "text"})  # text: the message of a MSGTXT / WMSG record, written for the guest
CREDENTIAL_KEYS = frozenset({"password", "token", "usertoken", "api_key", "key", "secret"})
MIN_LENGTH = 4  # shorter values (initials, "Li") would match ordinary words and ids
MIN_CREDENTIAL_LENGTH = 6  # "nope", "bad": wrong passwords tests send on purpose, no one's secret
# The guest of the check-in the local runner's banner prints (pms_connector.local.runner.usage): demo data,
# allowed in the banner's ingest commands only, a leak anywhere else.
DEMO_GUEST = frozenset({"Ana", "García"})
BANNER_START = "pms-connector is running on "  # the banner: from this line ...
BANNER_END = "Press Ctrl-C"  # ... to this one (runner.usage)
# MD5 tokens (the spec's usertoken, the UCM's URL token) are looked up in a set, not searched one by one.
_HEX_TOKEN = re.compile(r"[0-9A-Fa-f]{32}")
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{32,}")


def forms(value: str) -> list[str]:
    """The value, and as it would appear in a URL query (the UCM's GET API) or an XML document."""
    encoded = (urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value), html.escape(value))
    return [value, *dict.fromkeys(form for form in encoded if form != value)]


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
    # The curl lines of a local runner's banner, each with the demo values it may print (RunnerOutput).
    documented: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    runners: list[RunnerOutput] = field(default_factory=list)  # read to the end before the verdict
    # The product's log lines as the handler formatted them: read again from captured stdout, not counted twice.
    logged: set[str] = field(default_factory=set)

    @property
    def line_count(self) -> int:
        return len(self.lines) + len(self.documented)

    def add(self, value: Any, kind: str, min_length: int = MIN_LENGTH) -> None:
        if not isinstance(value, str) or len(value.strip()) < min_length:
            return
        value = value.strip()
        self.values.setdefault(value, kind)
        for form in forms(value)[1:]:
            self.values.setdefault(form, kind)
            self.encoded.add(form)

    def feed(self, text: str, *, skip_logged: bool = False) -> None:
        """Output that did not pass through this process's loggers (captured stdout, a subprocess's)."""
        if self.paused or not text:
            return
        for line in text.splitlines():
            if line.strip() and not (skip_logged and line in self.logged):
                self.lines.append(line)

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
        for section in ("httppms", "pms_server"):  # the Basic credential, derived, sent on every request
            settings = getattr(config, section, None)
            if getattr(settings, "user", None) and getattr(settings, "password", None) is not None:
                self.add(_basic(settings.user, settings.password.get_secret_value()),
                         f"{section} basic credential of {config.id}", MIN_CREDENTIAL_LENGTH)
        if getattr(config, "ucm", None) is not None:
            from pms_connector.ucm.client import ucm_token

            self.add(ucm_token(config.ucm), f"ucm token of {config.id}")  # derived, sent on every UCM call

    def harvest_properties(self, documents: Any) -> list[dict[str, Any]]:
        """The secrets of property documents as a test wrote them (valid or not: read field by field, then
        through the product's validation for what it derives); returns the documents."""
        from pms_connector.config import SECRET_FIELDS, parse_property

        if isinstance(documents, Mapping):
            documents = documents.get("properties", [documents])
        docs = [d for d in documents if isinstance(d, Mapping)] if isinstance(documents, list) else []
        for doc in docs:
            pid = doc.get("id", "?")
            for section, key in SECRET_FIELDS:
                settings = doc.get(section)
                value = settings.get(key) if isinstance(settings, Mapping) else None
                if isinstance(value, str | int) and not isinstance(value, bool):
                    self.add(str(value), f"{section}.{key} of {pid}")
            try:
                self.harvest_config(parse_property(dict(doc)))
            except Exception:  # noqa: S112 (an invalid document: its raw fields are learned above)
                continue
        return [dict(d) for d in docs]

    def harvest_properties_file(self, path: str | Path) -> list[dict[str, Any]]:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except (OSError, ValueError, ImportError) as exc:
            raise AssertionError(f"leak scan: cannot read the properties file {path}: {exc}") from None
        return self.harvest_properties(data)

    def harvest_md5_window(self, user: str, password: str, zone: ZoneInfo, start: float, end: float,
                           kind: str) -> None:
        """The spec's MD5 token (md5(user + YYYYMMDDHHNNSS + password)) for every second from start to end,
        in the property's local time: what a process whose memory we cannot see may have signed."""
        for second in range(int(start) - 2, int(end) + 3):
            stamp = datetime.fromtimestamp(second, zone).strftime("%Y%m%d%H%M%S")
            token = hashlib.md5((user + stamp + password).encode("utf-8"), usedforsecurity=False).hexdigest()
            self.values.setdefault(token, kind)

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

    def harvest_event(self, event: Any) -> None:
        """The credentials and guest data of an API Gateway event (its Authorization header and body)."""
        if not isinstance(event, Mapping):
            return
        headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
        self.harvest_authorization(headers.get("authorization"))
        body = event.get("body")
        if isinstance(body, str) and event.get("isBase64Encoded"):
            try:
                body = base64.b64decode(body).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                body = None
        if isinstance(body, str):
            try:
                self.harvest_record(json.loads(body), kind="request")
            except RecursionError:
                pass  # nested too deeply to hold a credential the product would read
            except ValueError:
                for key, value in re.findall(r"<(\w+)>([^<]{4,200})</\1>", body):  # XML bodies
                    self.harvest_record({key: value}, kind="request")

    def close_runners(self) -> list[str]:
        """Stop every runner still running, read its output to the end; what could not be read."""
        return [problem for runner in list(self.runners) if (problem := runner.close()) is not None]

    def leaks(self) -> list[Leak]:
        found: list[Leak] = []
        if not self.values:
            return found
        # Tokens of 32 hex digits (thousands of them: one per request signed) are looked up in a set; every
        # other value is found in one pass per line by one regex shaped as a trie of all values.
        hex_values: dict[str, str] = {}
        others: list[str] = []
        for value in self.values:
            if _HEX_TOKEN.fullmatch(value):
                hex_values.setdefault(value.lower(), value)
            else:
                others.append(value)
        pattern = _alternation(others)
        seen: set[str] = set()
        for line, allowed in [*((line, frozenset()) for line in self.lines), *self.documented]:
            if pattern is not None:
                for match in pattern.finditer(line):
                    value = match.group(0)
                    if value not in seen and value not in allowed and (value in self.encoded
                                                                       or _whole(line, match)):
                        seen.add(value)
                        found.append(Leak(self.values[value], value, line))
            if hex_values:
                for match in _HEX_RUN.finditer(line):  # a longer run of hex digits is no whole token
                    token = hex_values.get(match.group(0).lower())
                    if token is not None and token not in seen and token.lower() not in allowed \
                            and _whole(line, match):
                        seen.add(token)
                        found.append(Leak(self.values[token], match.group(0), line))
        return found

    def summary(self, leaks: list[Leak]) -> str:
        return (f"leak scan: {self.line_count} log lines searched for {len(self.values)} secret and "
                f"guest-data values: {len(leaks)} leak(s)")


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _whole(line: str, match: re.Match[str]) -> bool:
    """A value of letters or digits only counts as a whole word: "Rosa" leaks in '"guest": "Rosa"' but not in
    "Rosario", and passport "1234567890" not inside account id "123456789012"."""
    value = match.group(0)
    if not value.isalnum():
        return True
    before = line[match.start() - 1] if match.start() else " "
    after = line[match.end()] if match.end() < len(line) else " "
    return not (before.isalnum() or after.isalnum())


def _alternation(values: list[str]) -> re.Pattern[str] | None:
    """One regex matching any of the values, the longest at each position, shaped as a trie (common prefixes
    written once): the engine follows a value only while its characters match, so a line costs about its
    length, not its length times the number of values as a flat alternation does."""
    trie: dict[str, Any] = {}
    for value in values:
        node = trie
        for char in value:
            node = node.setdefault(char, {})
        node[""] = {}
    if not trie:
        return None
    try:
        return re.compile(_trie_regex(trie))
    except (RecursionError, re.error):  # nested deeper than the regex parser goes: a flat alternation
        return re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))


def _trie_regex(node: dict[str, Any]) -> str:
    parts = []
    while True:  # a chain of single characters is written as a literal, without nesting
        keys = [key for key in node if key]
        if len(keys) == 1 and "" not in node:
            parts.append(re.escape(keys[0]))
            node = node[keys[0]]
            continue
        break
    if keys:
        branches = [re.escape(key) + _trie_regex(node[key]) for key in sorted(keys)]
        group = "(?:" + "|".join(branches) + ")"
        parts.append(group + "?" if "" in node else group)  # greedy: the longer value first
    return "".join(parts)


class _Capture(logging.Handler):
    def __init__(self, scan: LeakScan, formatter: logging.Formatter | None, remember: bool = False) -> None:
        super().__init__(level=logging.DEBUG)
        self.scan = scan
        self.remember = remember  # the product's lines, also written to stdout by its own handler
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        if self.scan.paused:
            return
        try:
            line = self.format(record)
        except Exception:  # a record that cannot be formatted is kept raw, never dropped
            line = record.getMessage()
        if self.remember:
            self.scan.logged.add(line)
        # What a formatter may leave out (a library's arguments, extra keys) is scanned too.
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        self.scan.lines.append(f"{line} {json.dumps(extras, default=str)} {record.args!r}")


_STANDARD = frozenset(vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None))) | {"message", "asctime"}


def feed_captured(scan: LeakScan, report: Any) -> None:
    """What a test wrote to stdout and stderr in one phase (pytest's captured output, ``report.sections``
    of ``pytest_runtest_logreport``): Powertools Metrics' EMF blobs, print(), subprocesses writing to the
    inherited file descriptors. Each phase's report repeats the earlier phases' sections: only its own is
    read."""
    when = getattr(report, "when", None)
    for title, content in getattr(report, "sections", ()):
        if title in (f"Captured stdout {when}", f"Captured stderr {when}"):
            scan.feed(content, skip_logged=True)


class RunnerOutput:
    """Everything one local runner subprocess (``pms-connector local``) prints, read to the end by a thread
    and fed to the scan.

    Made before the runner starts: the secrets of the properties file it is handed are learned then (the
    subprocess's memory is out of reach). ``attach`` starts reading; ``close`` stops the runner if it still
    runs, waits for the last line, and learns the MD5 tokens the runner could have signed while it lived.
    The banner's curl lines are documented lines: the demo values they print are allowed there only."""

    def __init__(self, scan: LeakScan | None, properties: str | Path | None = None,
                 log_path: str | Path | None = None) -> None:
        self.scan = scan
        self.documents = scan.harvest_properties_file(properties) if scan is not None and properties else []
        self.log_path = Path(log_path) if log_path else None
        self.banner: list[str] = []  # every line up to the banner's last, as the test reads it
        self.banner_done = threading.Event()
        self.state = "start"  # start -> banner -> after
        self.process: subprocess.Popen[str] | None = None
        self.thread: threading.Thread | None = None
        self.started = self.ended = time.time()
        self.closed = False
        self.problem: str | None = None
        self._log: TextIO | None = None
        if scan is not None:
            scan.runners.append(self)
            for value in DEMO_GUEST:
                scan.add(value, "demo guest name")

    def attach(self, process: subprocess.Popen[str]) -> None:
        self.process, self.started = process, time.time()
        self.thread = threading.Thread(target=self._read, name=f"runner-output-{process.pid}", daemon=True)
        self.thread.start()

    def wait_banner(self, timeout: float) -> bool:
        """Whether the banner was printed in time (False: the runner ended or is still starting)."""
        self.banner_done.wait(timeout)
        return self.state == "after"

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        try:
            for line in self.process.stdout:
                self.feed_line(line.rstrip("\n"))
        finally:
            self.ended = time.time()
            self.banner_done.set()
            if self._log is not None:
                self._log.close()

    def feed_line(self, line: str) -> None:
        if self.state == "after":
            if self.log_path is not None:  # the runner's log after its banner, for whoever debugs a run
                self._log = self._log or self.log_path.open("a", encoding="utf-8")
                self._log.write(line + "\n")
        else:
            self.banner.append(line)
        if self.state == "start" and line.startswith(BANNER_START):
            self.state = "banner"
        if self.scan is not None:
            if self.state == "banner" and line.startswith("curl "):
                self.scan.documented.append((line, self.allowed(line)))
            else:
                self.scan.lines.append(line)
        if self.state != "after" and line.startswith(BANNER_END):
            self.state = "after"
            self.banner_done.set()

    def _document(self, pid: Any) -> dict[str, Any]:
        return next((d for d in self.documents if d.get("id") == pid), {})

    def allowed(self, line: str) -> frozenset[str]:
        """The demo values a banner curl line may print (runner.usage): in the ingest command of property P,
        P's ingest key and the demo guest; in its GET_REQUEST command, P's credential for that request (its
        fixed token, the MD5 token of the request's datetime, its Basic credential). Nothing else."""
        try:
            argv = shlex.split(line)
        except ValueError:
            return frozenset()
        options = {argv[i]: [argv[j + 1] for j in range(len(argv) - 1) if argv[j] == argv[i]]
                   for i in range(len(argv) - 1) if argv[i] in ("-H", "-d")}
        headers, data = options.get("-H", []), options.get("-d", [])
        url = next((a for a in argv if a.startswith(("http://", "https://"))), "")
        allowed: set[str] = set()
        ingest = re.search(r"/pms/([^/]+)/events$", url)
        if ingest:
            key = (self._document(ingest.group(1)).get("ingest") or {}).get("api_key")
            if isinstance(key, str) and f"Authorization: Bearer {key}" in headers:
                allowed.add(key)
            allowed |= DEMO_GUEST
        elif url.endswith("/httppms") and len(data) == 1:
            try:
                body = json.loads(data[0])
            except ValueError:
                body = {}
            body = body if isinstance(body, Mapping) else {}
            settings = self._document(body.get("property")).get("httppms") or {}
            user, password, token = settings.get("user"), settings.get("password"), body.get("usertoken")
            auth = settings.get("auth")
            if auth == "token" and token is not None and token == settings.get("token"):
                allowed.add(str(token))
            elif auth == "md5" and isinstance(token, str) and isinstance(user, str) and isinstance(password, str):
                stamp = re.sub(r"\D", "", str(body.get("datetime", "")))
                expected = hashlib.md5((user + stamp + password).encode("utf-8"), usedforsecurity=False)
                if body.get("user") == user and token.lower() == expected.hexdigest():
                    allowed.add(token)
            elif auth == "basic" and isinstance(user, str) and isinstance(password, str):
                credential = _basic(user, str(password))
                if f"Authorization: Basic {credential}" in headers:
                    allowed.add(credential)
        return frozenset(form for value in allowed for form in {*forms(value), value.lower()})

    def close(self, timeout: float = 15.0) -> str | None:
        """Ctrl-C if it still runs (killed after ``timeout`` s), its output read to the end, the tokens it
        could sign learned. Returns what went wrong reading it, if anything; safe to call again."""
        if self.closed:
            return self.problem
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=timeout)
            if self.thread is not None:
                self.thread.join(timeout=timeout)
                if self.thread.is_alive():
                    self.problem = (f"runner (pid {self.process.pid}): its output was still open {timeout:.0f} s "
                                    "after it ended; what it printed later was not searched")
        else:
            self.ended = time.time()
        self.closed = True
        if self.scan is not None:
            for doc in self.documents:
                try:
                    zone = ZoneInfo(str(doc.get("timezone")))
                except (ValueError, KeyError, OSError):
                    continue
                for section in ("httppms", "pms_server"):
                    settings = doc.get(section)
                    if isinstance(settings, Mapping) and settings.get("auth") == "md5":
                        user, password = settings.get("user"), settings.get("password")
                        if isinstance(user, str) and isinstance(password, str | int):
                            self.scan.harvest_md5_window(user, str(password), zone, self.started, self.ended,
                                                         f"{section} md5 token of {doc.get('id')} (runner)")
        return self.problem


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


def _wrap_function(module: Any, name: str, after: Callable[[Any], None]) -> Callable[[], None]:
    """Call ``after(result)`` after each call of the function ``module.name``, wherever it was imported with
    ``from module import name`` (tests.helpers' ``md5_token``, the product's); returns the undo."""
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        after(result)
        return result

    holders = []
    for loaded in list(sys.modules.values()):
        try:
            if vars(loaded).get(name) is original:
                holders.append(loaded)
        except TypeError:  # no __dict__
            continue
    for holder in holders:
        setattr(holder, name, wrapper)

    def undo() -> None:
        for holder in holders:
            if vars(holder).get(name) is wrapper:
                setattr(holder, name, original)

    return undo


def _is_python(argv: Any) -> bool:
    return isinstance(argv, list | tuple) and bool(argv) and (
        str(argv[0]) == sys.executable or Path(str(argv[0])).name.startswith("python"))


def _wrap_subprocess_run(scan: LeakScan) -> Callable[[], None]:
    """The output of every Python subprocess a test runs with ``subprocess.run`` and reads (captured: its
    stdout and stderr would otherwise reach no scan), and the API Gateway event handed to it on stdin.
    Shell commands (curl printing an API's answer) are not logs and are left alone."""
    original = subprocess.run

    def feed(argv: Any, kwargs: dict[str, Any], outputs: Iterable[Any]) -> None:
        if not _is_python(argv):
            return
        given = kwargs.get("input")
        if isinstance(given, str | bytes):
            with suppress(ValueError, RecursionError):
                scan.harvest_event(json.loads(given))
        for output in outputs:
            text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
            if isinstance(text, str):
                scan.feed(text)

    def run(*args: Any, **kwargs: Any) -> Any:
        argv = args[0] if args else kwargs.get("args")
        try:
            done = original(*args, **kwargs)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            feed(argv, kwargs, (exc.stdout, exc.stderr))
            raise
        feed(argv, kwargs, (done.stdout, done.stderr))
        return done

    subprocess.run = run  # type: ignore[assignment]

    def undo() -> None:
        if subprocess.run is run:
            subprocess.run = original

    return undo


@contextmanager
def scanning(scan: LeakScan | None = None) -> Iterator[LeakScan]:
    """Learn sensitive values and capture log lines while the block runs."""
    from pms_connector import api, auth
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
        scan.harvest_event(args[0] if args else kwargs.get("event", {}))

    def on_md5(token: Any) -> None:  # every MD5 token signed here: the tests' (helpers.signed), the product's
        scan.add(token, "md5 token", MIN_CREDENTIAL_LENGTH)

    undo = [_wrap(PropertyConfig, "model_validate", on_config),
            _wrap(StateStore, "ingest", on_ingest),
            _wrap(api, "serve", on_request),
            _wrap_function(auth, "md5_token", on_md5),
            _wrap_subprocess_run(scan)]
    product = logging.getLogger(product_logger.name)
    formatter = product.handlers[0].formatter if product.handlers else None
    handlers = [(product, _Capture(scan, formatter, remember=True)),
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
