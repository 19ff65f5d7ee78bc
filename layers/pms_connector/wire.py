"""What the connector's two wire formats can carry: strict JSON reading, and the records both answer formats hold.

Python's ``json.loads`` is more lenient than RFC 8259: it reads ``NaN``, ``Infinity`` and ``1e999`` (as inf),
which ``json.dumps`` then writes back as tokens no JSON parser accepts (a GET_REQUEST answer pmslink cannot
read, a bus event EventBridge refuses); it reads lone UTF-16 surrogates (``"\\ud800"``, or CESU-8 bytes),
which cannot be encoded as UTF-8 to be stored; and an integer longer than ``sys.get_int_max_str_digits()``
raises a plain ValueError. ``loads`` refuses all of these up front, with a reason, so a body is either
valid JSON the connector can store and send on, or a clear refusal.

A FIFO record leaves the connector in whichever format pmslink polls with, JSON or XML, so it must fit both:
``record_issues`` refuses field names that are no XML element name and nesting deeper than an XML answer
may hold. Text XML 1.0 cannot carry (NUL and most C0 controls) is not refused — a guest's check-in must
not fail over a stray control character in a note — but written to XML as U+FFFD (``xml_text``).

No lxml here: the ingest function uses this module and never imports lxml.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from typing import Any

# XML 1.0 (5th edition) Name production without ':' (an NCName), so lxml accepts it without a namespace.
_NAME_START = (
    "A-Z_a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
    "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff"
)
_NAME_CHAR = _NAME_START + r"\-.0-9\u00b7\u0300-\u036f\u203f-\u2040"
_ASCII_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")  # the same production, restricted to ASCII


@functools.cache
def _unicode_name() -> re.Pattern[str]:
    # Compiled on the first non-ASCII name only: its character ranges take ~5 ms to compile, at every cold start.
    return re.compile(f"[{_NAME_START}][{_NAME_CHAR}]*")


def is_xml_name(name: str) -> bool:
    """True when ``name`` can be an XML element name (an NCName)."""
    pattern = _ASCII_NAME if name.isascii() else _unicode_name()
    return pattern.fullmatch(name) is not None

# Characters XML 1.0 documents cannot contain, even as character references.
_NOT_XML_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")

# A record's own nesting (a BOOKING with its GUEST_LIST is 3). An XML answer wraps a record in three more
# levels (response, ACTION_LIST, record) and xmlcodec writes at most 32; parsers (libxml2's default is 256)
# and pmslink's own limits stay far away.
MAX_RECORD_DEPTH = 20

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_LONE_SURROGATE = "holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not Unicode text"
_MAX_INT_DIGITS = 4_300  # sys.get_int_max_str_digits() by default; far beyond any field of either spec


class WireError(ValueError):
    """A body or record the connector cannot carry; the message says why, without quoting the data.

    ``path`` locates the value when one value is the problem: keys and list indexes from the top."""

    def __init__(self, reason: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(f"field '{field_name(path)}': {reason}" if path else reason)
        self.reason = reason
        self.path = path


class _Refused:
    """Stands in, while parsing, for a value JSON cannot carry; the walk afterwards finds where it is."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def loads(raw: bytes) -> Any:
    """Parse a JSON body strictly (RFC 8259): UTF-8, -16 or -32 as ``json.loads`` detects them, decoded
    strictly; no NaN/Infinity, no number that overflows a float, no integer too long to read, no lone
    surrogate. WireError names the problem and, for a value, the field."""
    try:
        text = raw.decode(json.detect_encoding(raw))  # strict: CESU-8 and other surrogate bytes refused
    except UnicodeDecodeError as exc:
        raise WireError(f"not valid UTF-8 (byte offset {exc.start})") from None
    refused: list[_Refused] = []

    def refuse(reason: str) -> _Refused:
        refused.append(_Refused(reason))
        return refused[-1]

    def constant(name: str) -> Any:
        return refuse(f"{name} is not a JSON number")

    def real(digits: str) -> Any:
        number = float(digits)
        return refuse("the number is too large") if math.isinf(number) else number

    def integer(digits: str) -> Any:
        # int() of more digits than sys.get_int_max_str_digits() raises a bare ValueError
        return refuse("the number has too many digits") if len(digits) > _MAX_INT_DIGITS else int(digits)

    try:
        value = json.loads(text, parse_constant=constant, parse_float=real, parse_int=integer)
    except json.JSONDecodeError as exc:
        raise WireError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    except RecursionError:
        raise WireError("not readable: nested too deeply") from None
    if refused or _SURROGATE_ESCAPE.search(text):
        found = _first_problem(value, ())
        if found is not None:
            raise WireError(found[1], found[0])
    return value


def field_name(path: tuple[str | int, ...]) -> str:
    """``GUEST_LIST[0].name`` for ("GUEST_LIST", 0, "name")."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return _clip(text)


def record_issues(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, reason) for what an XML answer could not carry: names that are no XML element name, nesting
    deeper than MAX_RECORD_DEPTH. Empty when the record fits both formats."""
    issues: list[tuple[str, str]] = []

    def walk(value: Any, path: str, depth: int) -> None:
        if depth > MAX_RECORD_DEPTH:
            issues.append((path or "(record)", f"nested deeper than {MAX_RECORD_DEPTH} levels"))
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                name = f"{path}.{key}" if path else str(key)
                if not is_xml_name(key):
                    issues.append((_clip(name), "is not a valid field name (letters, digits, '_', '-', '.'; "
                                                "not starting with a digit, '-' or '.')"))
                walk(item, name, depth + 1)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]", depth + 1)

    walk(record, "", 1)
    return issues[:10]


def xml_text(text: str) -> str:
    """``text`` with every character XML 1.0 cannot carry replaced by U+FFFD (the JSON answer keeps it)."""
    return _NOT_XML_TEXT.sub("\ufffd", text)


def _first_problem(value: Any, path: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], str] | None:
    """Where the first value JSON cannot carry is, and why: a _Refused stand-in or a lone surrogate."""
    if isinstance(value, _Refused):
        return path, value.reason
    if isinstance(value, str):
        # json.loads joins valid surrogate pairs into one character: any surrogate left is a lone one
        return (path, _LONE_SURROGATE) if _SURROGATE.search(value) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if _SURROGATE.search(key):
                return (*path, key.encode("utf-8", "replace").decode()), _LONE_SURROGATE
            found = _first_problem(item, (*path, key))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_problem(item, (*path, index))
            if found:
                return found
    return None


def _clip(name: str, limit: int = 60) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
