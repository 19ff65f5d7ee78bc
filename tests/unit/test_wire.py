"""wire.py: strict JSON reading and what a record must be to reach pmslink in JSON and in XML."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pms_connector import wire
from pms_connector.store import dumps

# Text as a JSON body can carry it: any Unicode scalar value (no surrogates).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_every_json_value_reads_back_as_it_was_written(value: Any) -> None:
    assert wire.loads(dumps(value).encode()) == value
    assert wire.loads(json.dumps(value).encode("utf-16")) == value  # RFC 8259 lets readers detect UTF-16/32


@pytest.mark.parametrize(("raw", "reason", "field"), [
    (b'{"x": NaN}', "NaN is not a JSON number", "x"),
    (b'{"x": Infinity}', "Infinity is not a JSON number", "x"),
    (b'{"a": 1, "x": [1, -Infinity]}', "-Infinity is not a JSON number", "x[1]"),
    (b'{"x": 1e999}', "too large", "x"),
    (b'[{"ok": 1}, {"GUEST_LIST": [{"pax": -1e400}]}]', "too large", "[1].GUEST_LIST[0].pax"),
    (b'{"x": ' + b"9" * 4_301 + b"}", "too many digits", "x"),
    (b'{"x": "\\ud800"}', "lone UTF-16 surrogate", "x"),
    (b'{"x": "\\udfff\\ud800"}', "lone UTF-16 surrogate", "x"),  # a pair in the wrong order: two lone ones
    (b'{"\\ud800": 1}', "lone UTF-16 surrogate", "?"),
    (b'["ok", ["\\uDBFF"]]', "lone UTF-16 surrogate", "[1][0]"),
    (b'{"x": "\xed\xa0\x80"}', "not valid UTF-8", None),  # CESU-8: a surrogate encoded as UTF-8 bytes
    (b'{"x": "\xff"}', "not valid UTF-8", None),
    (b'{"x": 1', "not valid JSON", None),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply", None),
])
def test_what_json_loads_lets_through_is_refused_naming_the_field(raw: bytes, reason: str, field: str | None
                                                                   ) -> None:
    with pytest.raises(wire.WireError, match=reason) as refused:
        wire.loads(raw)
    assert (wire.field_name(refused.value.path) if refused.value.path else None) == field


@pytest.mark.parametrize("raw", [b'{"x": 1e-999}', b'{"x": "\\ud83d\\ude00"}', b'{"x": "\\\\ud800"}',
                                 b'\xef\xbb\xbf{"x": 1}', b'{"x": "a\\u0000b"}'])
def test_what_is_valid_json_is_read(raw: bytes) -> None:
    assert isinstance(wire.loads(raw), dict)


def test_a_record_of_the_spec_fits_both_formats() -> None:
    booking = {"datetime": "2015-01-01T10:11:12", "action": "BOOKING", "booking_uid": "b1",
               "GUEST_LIST": [{"uid": "g1", "name": "Zoë", "allow_contact": True, "x-extra.1": None}]}
    assert wire.record_issues(booking) == []


@pytest.mark.parametrize(("record", "field", "reason"), [
    ({"1st": "x"}, "1st", "not a valid field name"),
    ({"": "x"}, "", "not a valid field name"),
    ({"a b": 1}, "a b", "not a valid field name"),
    ({"ns:tag": 1}, "ns:tag", "not a valid field name"),
    ({"GUEST_LIST": [{"bad key": 1}]}, "GUEST_LIST[0].bad key", "not a valid field name"),
    ({"deep": json.loads("[" * 25 + "]" * 25)}, "deep" + "[0]" * 19, "nested deeper than 20 levels"),
])
def test_what_an_xml_answer_cannot_carry_is_named(record: dict[str, Any], field: str, reason: str) -> None:
    issues = wire.record_issues(record)
    assert issues and issues[0][0] == field and reason in issues[0][1], issues


def test_a_record_at_the_depth_limit_fits() -> None:
    assert wire.record_issues({"deep": json.loads("[" * 19 + "]" * 19)}) == []


def test_text_xml_cannot_carry_becomes_u_fffd_and_the_rest_is_kept() -> None:
    assert wire.xml_text("a\x00b\x1fc\td\ne\rf\ud800g\ufffeh") == "a\ufffdb\ufffdc\td\ne\rf\ufffdg\ufffdh"


@given(st.text(max_size=12) | st.text(st.characters(max_codepoint=127), max_size=12))
def test_the_ascii_fast_path_names_what_the_full_xml_name_production_names(name: str) -> None:
    assert wire.is_xml_name(name) == (wire._unicode_name().fullmatch(name) is not None)


@pytest.mark.parametrize(("name", "ok"), [("booking_uid", True), ("GUEST_LIST", True), ("x-extra.1", True),
                                          ("Zoë", True), ("名前", True), ("1st", False), ("-a", False),
                                          (".a", False), ("a b", False), ("a:b", False), ("", False)])
def test_xml_names(name: str, ok: bool) -> None:
    assert wire.is_xml_name(name) is ok
