"""Unit tests for pms_connector.ucm.commands: the UCM PMS API guide's commands, their XML and outbox form."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from pms_connector.ucm.commands import (
    UcmCheckin,
    UcmCheckout,
    UcmCommand,
    UcmMov,
    UcmUpdate,
    UcmWakeup,
    command_from_dict,
    with_short_names,
)
from pms_connector.xmlcodec import parse_request

# The guide's examples, as printed (its check-in and check-out examples open with a stray
# "</pms_data_request>" and never close the root: the well-formed document is meant).
GUIDE_CHECKIN = """
<pms_data_request>
<checkin>
  <address>1100</address>
  <room>1100</room>
  <account>1100</account>
  <firstname>John</firstname>
  <lastname>Doe</lastname>
  <language>EN</language>
  <vipcode>2</vipcode>
  <datein>2010/01/01 11:00</datein>
  <dateout>2010/01/07 13:00</dateout>
  <credit>9999900</credit>
  <cidnumber>11001100</cidnumber>
  <cos>3</cos>
</checkin>
</pms_data_request>
"""
GUIDE_CHECKOUT = """
<pms_data_request>
<checkout>
  <address>1100</address>
  <room>1100</room>
</checkout>
</pms_data_request>
"""
GUIDE_UPDATE = """
<pms_data_request>
<update>
  <address>1100</address>
  <room>1100</room>
  <account>1100</account>
  <firstname>John</firstname>
  <lastname>Doe</lastname>
  <language>EN</language>
  <vipcode>2</vipcode>
  <datein>20100101</datein>
  <dateout>20100107</dateout>
  <credit>9999900</credit>
  <cidnumber>11001100</cidnumber>
  <cos>3</cos>
</update>
</pms_data_request>
"""
GUIDE_MOV = """
<pms_data_request>
<mov>
  <address>1046</address>
  <room>1046</room>
  <d_address>1100</d_address>
  <d_room>1100</d_room>
</mov>
</pms_data_request>
"""
GUIDE_WAKEUP = """
<pms_data_request>
<wakeup>
  <address>1100</address>
  <room>1100</room>
  <w_action>1</w_action>
  <w_mode>1</w_mode>
  <w_date>20140101</w_date>
</wakeup>
</pms_data_request>
"""

GUEST = {"address": "1100", "room": "1100", "account": "1100", "firstname": "John", "lastname": "Doe",
         "language": "EN", "vipcode": "2", "credit": "9999900", "cidnumber": "11001100", "cos": "3"}

EXAMPLES: list[tuple[UcmCommand, str]] = [
    (UcmCheckin(**GUEST, datein="2010/01/01 11:00", dateout="2010/01/07 13:00"), GUIDE_CHECKIN),
    (UcmCheckout(address="1100", room="1100"), GUIDE_CHECKOUT),
    (UcmUpdate(**GUEST, datein="20100101", dateout="20100107"), GUIDE_UPDATE),
    (UcmMov(address="1046", room="1046", d_address="1100", d_room="1100"), GUIDE_MOV),
    (UcmWakeup(address="1100", room="1100", w_action="1", w_mode="1", w_date="20140101"), GUIDE_WAKEUP),
]

NAMES = ["José María", "Ñandú-Ölçer", "O'Brien", "D'Artagnan & Söhne <Ltd>", "王小明", "김민준", "محمد عبد الله",
         "Zoë \"Zee\" Ünal", "Łukasz Żółć", "👩🏽‍💻 Ada"]


def compact(xml: str) -> bytes:
    """The guide's pretty-printed example as the one-line document sent in the URL."""
    return re.sub(r">\s+<", "><", xml.strip()).encode("utf-8")


def element_names(xml: bytes) -> list[str]:
    return [child.tag for child in etree.fromstring(xml)[0]]


def parse_back(xml: bytes) -> UcmCommand:
    """What a reader of the document (the UCM, the simulator) sees: action and fields."""
    document = parse_request(xml)
    assert len(document) == 1
    ((action, fields),) = document.items()
    assert isinstance(fields, dict)
    return command_from_dict(action, {k: str(v) for k, v in fields.items()})


# ------------------------------------------------------------------------------------------- the XML


@pytest.mark.parametrize(("command", "example"), EXAMPLES, ids=[c.action for c, _ in EXAMPLES])
def test_each_command_writes_the_guides_example(command: UcmCommand, example: str) -> None:
    assert command.to_xml() == compact(example)


@pytest.mark.parametrize(("command", "example"), EXAMPLES, ids=[c.action for c, _ in EXAMPLES])
def test_each_example_parses_back_to_the_same_command(command: UcmCommand, example: str) -> None:
    assert parse_back(command.to_xml()) == command
    assert parse_back(compact(example)) == command


def test_actions_are_named_after_the_guide() -> None:
    assert [c.action for c in (UcmCheckin, UcmUpdate, UcmCheckout, UcmMov, UcmWakeup)] == [
        "checkin", "update", "checkout", "mov", "wakeup"]


@pytest.mark.parametrize("cls", [UcmCheckin, UcmUpdate])
def test_guest_fields_follow_the_guides_order_and_unset_ones_are_omitted(cls: type[UcmCheckin]) -> None:
    full = cls(**GUEST, datein="d1", dateout="d2")
    assert element_names(full.to_xml()) == [
        "address", "room", "account", "firstname", "lastname", "language", "vipcode", "datein", "dateout",
        "credit", "cidnumber", "cos"]
    sparse = cls(address="201", room="201", lastname="Doe", cos="4")
    assert sparse.to_xml() == (f"<pms_data_request><{cls.action}><address>201</address><room>201</room>"
                               f"<lastname>Doe</lastname><cos>4</cos></{cls.action}></pms_data_request>").encode()


def test_wakeup_fields_follow_the_table_order_with_the_time() -> None:
    command = UcmWakeup(w_time="0630", w_date="20260102", w_mode="1", w_action="1", room="101", address="2101")
    assert element_names(command.to_xml()) == ["address", "room", "w_action", "w_mode", "w_date", "w_time"]
    cancel = UcmWakeup(address="2101", room="101", w_action="0", w_date="20260102", w_time="0630")
    assert b"<w_action>0</w_action><w_date>20260102</w_date><w_time>0630</w_time>" in cancel.to_xml()


def test_xml_has_no_declaration_and_no_whitespace() -> None:
    xml = UcmCheckout(address="1", room="1").to_xml()
    assert xml.startswith(b"<pms_data_request><checkout>")
    assert b"<?xml" not in xml
    assert b"\n" not in xml


@pytest.mark.parametrize("name", NAMES)
def test_names_are_written_as_utf8_text_byte_exact(name: str) -> None:
    command = UcmCheckin(address="1100", room="1100", firstname=name, lastname=name)
    xml = command.to_xml()
    escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").encode("utf-8")
    assert b"<firstname>" + escaped + b"</firstname>" in xml
    assert b"&#" not in xml  # no character references: the UCM gets UTF-8 as is
    assert parse_back(xml) == command


def test_values_xml_cannot_carry_are_refused_without_quoting_them() -> None:
    for bad in ("Jos\x00e", "Ann\x1bie", "\ud800x", "A\ufffe"):  # (pydantic itself refuses lone surrogates)
        with pytest.raises(ValueError, match=r"XML cannot carry|unicode") as caught:
            UcmCheckin(address="1", room="1", firstname=bad)
        assert bad not in str(caught.value)
    assert UcmCheckin(address="1", room="1", firstname="tab\there").firstname == "tab\there"


def test_repr_hides_the_guest() -> None:
    command = UcmCheckin(address="1", room="1", firstname="Zacarías", lastname="Quiñones", cidnumber="600111222")
    for secret in ("Zacarías", "Quiñones", "600111222"):
        assert secret not in repr(command)
        assert secret not in str(command)


@pytest.mark.parametrize(("cls", "fields"), [
    (UcmCheckin, {"room": "1"}),  # no address
    (UcmCheckout, {"address": "", "room": "1"}),
    (UcmMov, {"address": "1", "room": "1", "d_address": "2"}),  # no d_room
    (UcmWakeup, {"address": "1", "room": "1", "w_action": "2"}),
    (UcmWakeup, {"address": "1", "room": "1", "w_mode": "3"}),
    (UcmWakeup, {"address": "1", "room": "1", "w_date": "2026-01-02"}),
    (UcmWakeup, {"address": "1", "room": "1", "w_time": "6:30"}),
    (UcmCheckin, {"address": "1", "room": "1", "cos": "5"}),
    (UcmCheckin, {"address": "1", "room": "1", "name": "jjkk"}),  # the URL example's old field: unknown
    (UcmCheckin, {"address": 1100, "room": "1"}),  # values are strings
])
def test_invalid_fields_are_refused(cls: type[UcmCheckin], fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (pydantic's ValidationError)
        cls(**fields)  # type: ignore[arg-type]


def test_commands_are_frozen() -> None:
    command = UcmCheckout(address="1", room="1")
    with pytest.raises(ValueError):  # noqa: PT011
        command.room = "2"  # type: ignore[misc]
    assert hash(command) == hash(UcmCheckout(address="1", room="1"))


# ------------------------------------------------------------------------------------- outbox form


@pytest.mark.parametrize(("command", "example"), EXAMPLES, ids=[c.action for c, _ in EXAMPLES])
def test_to_dict_and_command_from_dict_are_inverse(command: UcmCommand, example: str) -> None:
    stored = command.to_dict()
    assert all(isinstance(v, str) for v in stored.values())
    assert None not in stored.values()
    again = command_from_dict(command.action, stored)
    assert again == command
    assert type(again) is type(command)


def test_to_dict_leaves_unset_fields_out() -> None:
    assert UcmCheckin(address="1", room="2", lastname="Doe").to_dict() == {"address": "1", "room": "2",
                                                                           "lastname": "Doe"}


def test_command_from_dict_refuses_unknown_actions_and_fields() -> None:
    with pytest.raises(ValueError, match="unknown UCM action"):
        command_from_dict("dnd", {"address": "1", "room": "1"})
    with pytest.raises(ValueError, match="unknown UCM action"):
        command_from_dict("CHECKIN", {"address": "1", "room": "1"})
    with pytest.raises(ValueError):  # noqa: PT011
        command_from_dict("checkout", {"address": "1", "room": "1", "firstname": "x"})
    with pytest.raises(ValueError, match="mapping"):
        command_from_dict("checkout", ["address", "room"])  # type: ignore[arg-type]


def test_update_is_not_a_checkin() -> None:
    update = command_from_dict("update", {"address": "1", "room": "1"})
    assert isinstance(update, UcmUpdate)
    assert not isinstance(update, UcmCheckin)
    assert update != UcmCheckin(address="1", room="1")  # type: ignore[comparison-overlap]


_xml_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00\ufffe\uffff")
                    .filter(lambda c: c in "\t\n\r" or ord(c) >= 0x20), min_size=1, max_size=40)


@given(firstname=_xml_text, lastname=_xml_text)
def test_any_xml_text_survives_the_outbox_and_the_xml(firstname: str, lastname: str) -> None:
    command = UcmUpdate(address="1100", room="1100", firstname=firstname, lastname=lastname)
    assert command_from_dict("update", command.to_dict()) == command
    root = etree.fromstring(command.to_xml())
    assert root.findtext("update/firstname") == firstname
    assert root.findtext("update/lastname") == lastname


# -------------------------------------------------------------------------------------- short names


def test_names_that_fit_are_left_alone() -> None:
    command = UcmCheckin(address="1", room="1", firstname="John ", lastname="Doe")
    assert with_short_names(command, 5) is command


def test_an_over_long_name_keeps_its_first_characters_without_trailing_spaces() -> None:
    command = UcmCheckin(address="1", room="1", firstname="Maria Antonia", lastname="Doe", account="77")
    short = with_short_names(command, 6)
    assert (short.firstname, short.lastname) == ("Maria", "Doe")
    assert short.account == "77"
    assert type(short) is UcmCheckin


def test_a_lastname_alone_too_long_is_cut_and_the_firstname_kept() -> None:
    command = UcmUpdate(address="1", room="1", firstname="Ana", lastname="Wolfeschlegelsteinhausenbergerdorff")
    short = with_short_names(command, 10)
    assert (short.firstname, short.lastname) == ("Ana", "Wolfeschle")
    assert type(short) is UcmUpdate


def test_names_are_never_emptied_nor_dropped() -> None:
    spaces = UcmCheckin(address="1", room="1", firstname="      ", lastname="   Lee   Smith")
    short = with_short_names(spaces, 3)
    assert short.firstname == "   "  # nothing but spaces: kept (cut), not emptied
    assert short.lastname == "Lee"
    one = with_short_names(UcmCheckin(address="1", room="1", firstname="Bartholomew"), 1)
    assert (one.firstname, one.lastname) == ("B", None)


def test_limits_count_code_points_of_cjk_and_arabic_names() -> None:
    command = UcmCheckin(address="1", room="1", firstname="王小明明明", lastname="محمد عبد الله")
    short = with_short_names(command, 4)
    assert (short.firstname, short.lastname) == ("王小明明", "محمد")


def test_combining_characters_are_not_split_from_their_base() -> None:
    decomposed = unicodedata.normalize("NFD", "Éloïse")  # E + U+0301, l, o, i + U+0308, s, e: 8 code points
    short = with_short_names(UcmCheckin(address="1", room="1", firstname=decomposed), 5)
    assert short.firstname == unicodedata.normalize("NFD", "Élo")  # not "Éloi" without its diaeresis
    assert short.firstname is not None and len(short.firstname) <= 5


@pytest.mark.parametrize(("name", "limit", "expected"), [
    ("Ann👨‍👩‍👧‍👦", 5, "Ann"),  # a family emoji (7 code points) is not cut into a partial family
    ("Bo👍🏽x", 3, "Bo"),  # a thumb without its skin tone would be another emoji
    ("Al🇪🇸🇫🇷", 4, "Al🇪🇸"),  # flags are pairs of regional indicators
    ("Al🇪🇸🇫🇷", 5, "Al🇪🇸"),
    ("Li❤️x", 3, "Li"),  # heart + variation selector
    ("👨‍👩‍👧‍👦", 2, "👨"),  # one cluster longer than the limit: cut inside it, without a dangling joiner
])
def test_emoji_sequences_are_not_split(name: str, limit: int, expected: str) -> None:
    short = with_short_names(UcmCheckin(address="1", room="1", lastname=name), limit)
    assert short.lastname == expected


def test_commands_without_names_are_unchanged_and_the_limit_is_checked() -> None:
    for command in (UcmCheckout(address="1", room="1"), UcmMov(address="1", room="1", d_address="2", d_room="2"),
                    UcmWakeup(address="1", room="1", w_action="0")):
        assert with_short_names(command, 1) is command
    with pytest.raises(ValueError, match="limit"):
        with_short_names(UcmCheckin(address="1", room="1"), 0)


_names = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=60)


@given(firstname=_names, lastname=_names, limit=st.integers(min_value=1, max_value=40))
def test_short_names_are_non_empty_prefixes_within_the_limit(firstname: str, lastname: str, limit: int) -> None:
    command = UcmCheckin(address="1", room="1", firstname=firstname, lastname=lastname)
    short = with_short_names(command, limit)
    for before, after in ((firstname, short.firstname), (lastname, short.lastname)):
        assert after is not None and after != ""
        assert len(after) <= limit
        assert after == before or (before.strip() or before).startswith(after)
        if len(before) <= limit:
            assert after == before
    assert command_from_dict("checkin", short.to_dict()) == short
