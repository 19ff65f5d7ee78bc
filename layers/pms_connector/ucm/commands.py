"""The Grandstream UCM PMS API commands (guide tables 3-7) as frozen models named after the guide.

Every value is a string, as it travels in the XML; ``None`` means the element is omitted. A command turns
into the ``data`` parameter of the ``/pmsapi`` URL with ``to_xml()`` and into the flat dict stored in the
outbox with ``to_dict()``; ``command_from_dict`` is the inverse of the latter.

Field values are checked on construction: identifiers are non-empty, wake-up and COS values follow the
guide, and no value holds a character XML 1.0 cannot carry (so ``to_xml`` cannot fail later, in the
dispatcher). Validation errors never quote the input (guest names stay out of logs and tracebacks).

lxml is imported by ``to_xml`` only, so the ingest path can build and store commands without loading it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal, TypeAlias, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "UcmCheckin",
    "UcmCheckout",
    "UcmCommand",
    "UcmMov",
    "UcmUpdate",
    "UcmWakeup",
    "command_from_dict",
    "with_short_names",
]

# Characters outside XML 1.0's Char production (control characters, lone surrogates, U+FFFE/U+FFFF).
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(value: str) -> str:
    if _NOT_XML_CHAR.search(value):
        raise ValueError("holds a character XML cannot carry")
    return value


_XmlText = AfterValidator(_xml_text)
# Room/extension identifiers ("identifier recognized by destination").
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64), _XmlText]
# Guest names: any UTF-8 text; shortened to the UCM's limit by with_short_names, never refused for length
# at a realistic size.
Name = Annotated[str, StringConstraints(max_length=1024), _XmlText]
# Other values: as long as the PMS records that feed them may be (records.Text).
ShortText = Annotated[str, StringConstraints(max_length=256), _XmlText]
CallPermission = Annotated[str, StringConstraints(pattern=r"^[1-4]$")]  # "1 < 2 < 3 < 4"


class _UcmCommandBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, hide_input_in_errors=True)

    action: ClassVar[str]
    # Element order in the XML. The guide's tables and examples agree except for checkin/update, whose
    # examples put cidnumber before cos: the XML follows the examples (the form Grandstream shows working).
    xml_fields: ClassVar[tuple[str, ...]]

    def to_xml(self) -> bytes:
        """``<pms_data_request><{action}><field>value</field>...</{action}></pms_data_request>``, UTF-8.

        No XML declaration and no whitespace between elements, as in the guide's URL example; values are
        written as UTF-8 text (no character references), ``None`` fields are left out.
        """
        from lxml import etree

        root = etree.Element("pms_data_request")
        body = etree.SubElement(root, self.action)
        for name in self.xml_fields:
            value = getattr(self, name)
            if value is not None:
                etree.SubElement(body, name).text = value
        data: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
        return data

    def to_dict(self) -> dict[str, str]:
        """The fields that are set, by the guide's names (what the outbox stores; see command_from_dict)."""
        return {name: value for name, value in self.model_dump().items() if value is not None}


class _GuestCommand(_UcmCommandBase):
    """Fields shared by checkin and update (guide tables 3 and 5, in the tables' order)."""

    xml_fields: ClassVar[tuple[str, ...]] = (
        "address", "room", "account", "firstname", "lastname", "language", "vipcode",
        "datein", "dateout", "credit", "cidnumber", "cos",
    )

    address: Identifier
    room: Identifier
    account: ShortText | None = None
    # Kept out of repr(): a command in a log line or a traceback does not show the guest.
    firstname: Name | None = Field(None, repr=False)
    lastname: Name | None = Field(None, repr=False)
    language: ShortText | None = None
    vipcode: ShortText | None = None
    datein: ShortText | None = None  # the property's date_format (the guide shows two)
    dateout: ShortText | None = None
    credit: ShortText | None = None
    cos: CallPermission | None = None
    cidnumber: ShortText | None = Field(None, repr=False)


class UcmCheckin(_GuestCommand):
    """Check-in: notify the arrival of a guest (guide table 3)."""

    action: ClassVar[str] = "checkin"


class UcmUpdate(_GuestCommand):
    """Update: change the data of a guest in house (guide table 5)."""

    action: ClassVar[str] = "update"


class UcmCheckout(_UcmCommandBase):
    """Check-out: notify the departure of a guest (guide table 4)."""

    action: ClassVar[str] = "checkout"
    xml_fields: ClassVar[tuple[str, ...]] = ("address", "room")

    address: Identifier
    room: Identifier


class UcmMov(_UcmCommandBase):
    """Mov: the guest moves from address/room to d_address/d_room (guide table 6)."""

    action: ClassVar[str] = "mov"
    xml_fields: ClassVar[tuple[str, ...]] = ("address", "room", "d_address", "d_room")

    address: Identifier
    room: Identifier
    d_address: Identifier
    d_room: Identifier


class UcmWakeup(_UcmCommandBase):
    """Wakeup: set ("1") or cancel ("0") a wake-up call (guide table 7)."""

    action: ClassVar[str] = "wakeup"
    xml_fields: ClassVar[tuple[str, ...]] = ("address", "room", "w_action", "w_mode", "w_date", "w_time")

    address: Identifier
    room: Identifier
    w_action: Literal["0", "1"] | None = None  # 1 = set, 0 = cancel
    w_mode: Literal["1", "2"] | None = None  # 1 = single (default), 2 = daily
    w_date: Annotated[str, StringConstraints(pattern=r"^\d{8}$")] | None = None  # YYYYMMDD
    w_time: Annotated[str, StringConstraints(pattern=r"^\d{4}$")] | None = None  # HHMM


UcmCommand: TypeAlias = UcmCheckin | UcmUpdate | UcmCheckout | UcmMov | UcmWakeup

_BY_ACTION: dict[str, type[UcmCommand]] = {
    cls.action: cls for cls in (UcmCheckin, UcmUpdate, UcmCheckout, UcmMov, UcmWakeup)
}


def command_from_dict(action: str, fields: Mapping[str, str]) -> UcmCommand:
    """Rebuild a command from its action and ``to_dict()``; ValueError for an unknown action or bad fields."""
    cls = _BY_ACTION.get(action) if isinstance(action, str) else None
    if cls is None:
        raise ValueError(f"unknown UCM action {str(action)[:40]!r}")
    if not isinstance(fields, Mapping):
        raise ValueError(f"{action}: fields must be a mapping, not {type(fields).__name__}")
    return cls.model_validate(dict(fields))  # pydantic's ValidationError is a ValueError


# ------------------------------------------------------------------------------------------ short names

_C = TypeVar("_C", bound=_UcmCommandBase)
_ZWJ = "\u200d"


def with_short_names(command: _C, limit: int) -> _C:
    """The command with firstname and lastname each at most ``limit`` characters (UCM codes 25/26).

    Counted in Unicode code points. A name that fits is left as it is; an over-long one keeps its first
    ``limit`` characters (leading and trailing spaces removed, and not ending in the middle of a combined
    character or emoji sequence when that can be avoided). A name is never emptied nor dropped. Commands
    without names (checkout, mov, wakeup) are returned unchanged.
    """
    if limit < 1:
        raise ValueError("limit must be 1 or more")
    if not isinstance(command, _GuestCommand):
        return command
    update = {
        field: short
        for field in ("firstname", "lastname")
        if (name := getattr(command, field)) is not None and (short := _shorten(name, limit)) != name
    }
    return command.model_copy(update=update) if update else command


def _shorten(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    text = name.strip() or name  # an all-space name stays (it must not become empty)
    if len(text) <= limit:
        return text
    cut = limit
    while cut > 0 and _continues_cluster(text, cut):
        cut -= 1
    if cut == 0:  # one cluster longer than the limit: cut inside it rather than return nothing
        short = text[:limit].rstrip().rstrip(_ZWJ)
        return short or text[:limit]
    return text[:cut].rstrip() or text[:cut]


def _continues_cluster(text: str, index: int) -> bool:
    """Whether text[index] belongs to the same user-perceived character as text[index - 1] (approximate
    extended grapheme cluster rules: marks, ZWJ sequences, variation selectors, skin tones, emoji tags,
    Hangul jamo, regional-indicator pairs)."""
    char, previous = text[index], text[index - 1]
    code = ord(char)
    if _ZWJ in (previous, char) or unicodedata.category(char) in ("Mn", "Mc", "Me"):
        return True
    if (0xFE00 <= code <= 0xFE0F or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F
            or 0xE0100 <= code <= 0xE01EF or 0x1160 <= code <= 0x11FF):
        return True
    if _is_regional_indicator(char) and _is_regional_indicator(previous):
        run = 0
        while index - 1 - run >= 0 and _is_regional_indicator(text[index - 1 - run]):
            run += 1
        return run % 2 == 1  # the previous indicator starts a flag this one completes
    return False


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF
