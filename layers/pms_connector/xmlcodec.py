"""XML codec for the char pmslink HTTPPMS API (the "XML can be used" alternative to JSON).

JSON is the data format the spec recommends and the one every example uses; this module is only
imported (lazily) when a request arrives with an XML ``Content-Type``. The request is then read as
XML and the response is written as XML. The shapes are the same as the JSON ones; only the encoding
differs.

Request mapping (``parse_request``)
-----------------------------------
* The root element may have any name (``<request>``, ``<httppms>``, ...). Each child element is a
  field: the element name is the key, its text is the value.
* Values stay **strings** with XML whitespace (space, tab, CR, LF) stripped from both ends. Numbers
  and booleans are not converted: ``"2.50"``, ``"1"``, ``"true"``, ``"false"`` are left to the
  caller's pydantic models to coerce.
* An empty element (``<notes/>``, ``<notes>  </notes>``) gives ``""``.
* An element that has element children gives:

  - a **list** when all its children share one tag name and either there is more than one child or
    the element name is an ALL-CAPS list name ending in ``_LIST`` (``ACTION_LIST``, ``GUEST_LIST``,
    ``ITEM_LIST``, ...). Each list item with children is a dict of its fields (a record); a list item
    without children is its string value. Example:
    ``<GUEST_LIST><guest><uid>1</uid></guest></GUEST_LIST>`` -> ``{"GUEST_LIST": [{"uid": "1"}]}``.
  - otherwise a **nested dict** of its fields.

  An ALL-CAPS ``*_LIST`` element with no children gives ``[]`` (not ``""``), so that
  ``"GUEST_LIST": []`` survives a round trip. Note the one ambiguity of the format: a single child
  under an element that is not an ALL-CAPS ``*_LIST`` name (``<data><item>..</item></data>``) is a
  nested dict (``{"data": {"item": {...}}}``), not a one-item list.
* The root element and every list record are dicts: a field repeated at the same level is an error
  naming the field.
* Attributes are ignored. Namespaces are dropped (only the local name is used). Comments and
  processing instructions are removed. CDATA sections are read as text.
* Mixed content (non-whitespace text next to child elements) is an error, and so is text directly
  inside the root element (where fields are expected).

Response mapping (``dump_response``)
------------------------------------
* Root element ``<response>`` (``root=`` to change it), UTF-8, preceded by
  ``<?xml version="1.0" encoding="UTF-8"?>``.
* Each key becomes an element; keys must be ``str`` and valid XML element names without a colon.
* ``None`` values are omitted (in lists too).
* ``bool`` -> ``"true"``/``"false"``; ``int`` -> decimal digits; ``float``/``Decimal`` -> the spec's
  type 'real': two decimals, rounded half up (``Decimal("2.2")`` -> ``2.20``, ``0.675`` -> ``0.68``);
  NaN and infinities are rejected; ``str`` as is, but for the characters XML 1.0 cannot carry at all
  (NUL, most C0 controls, lone surrogates), each written as U+FFFD: the JSON answer keeps them.
* A list (or tuple) under key ``K`` -> ``<K>`` with one child per item; the item tag is ``record``
  for ``ACTION_LIST``, ``guest`` for ``GUEST_LIST``, ``item`` for ``ITEM_LIST`` and for any other
  key. Dict items become elements with their fields; scalar items become text.
* A dict (any ``Mapping``) -> nested element.
* Any other value type (``bytes``, ``datetime``, ...) or nesting deeper than 32 levels is an error
  (the ingest API refuses records nested that deep: wire.py); serialise such values to ``str`` before
  calling (the spec's dates are strings ``YYYY-MM-DDTHH:NN:SS``).

Security
--------
* One module-level ``lxml`` parser: no entity resolution, no network, no DTD loading or validation,
  no huge-tree mode, comments and processing instructions removed. It is also fixed to UTF-8, so the
  encoding named in an ``<?xml ... encoding=...?>`` declaration is ignored: the bytes checked by the
  pre-scan are exactly the text the parser reads (no UTF-7/UTF-16 tricks), and a body whose
  declaration claims ISO-8859-1 but is UTF-8 is still read correctly. lxml serialises use of a
  shared parser with an internal lock, so it is safe across threads.
* Before parsing: bodies over ``max_bytes`` (UTF-8 length for ``str`` input) are rejected, bytes
  must be valid UTF-8 (an optional BOM is allowed), and any ``<!DOCTYPE`` or ``<!ENTITY``
  (case-insensitive, anywhere, even inside CDATA) is rejected.
* After parsing: a document with any DOCTYPE / DTD is rejected again (defence in depth), then the
  depth (the root element is depth 1) and the number of elements (root included) are checked before
  any conversion. Unresolved entity references are rejected.
* Every failure is an ``XmlError`` (a ``ValueError``) whose message starts with ``"XML: "`` and never
  quotes more than 40 characters of the document; ``parse_request`` raises nothing else for any
  ``bytes``/``str`` input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

from lxml import etree

from pms_connector.wire import is_xml_name, xml_text

__all__ = ["XmlError", "dump_response", "is_xml_content_type", "parse_request"]


class XmlError(ValueError):
    """Invalid, unsafe or unrepresentable XML. The message never quotes more than 40 characters."""


DTD_NOT_ALLOWED = "XML: DTDs and entity declarations are not allowed"

# Created once; never pass collect_ids=False (keep lxml's default). encoding="utf-8" overrides the
# document's own encoding declaration, see the module docstring.
HARDENED_PARSER = _PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    dtd_validation=False,
    remove_comments=True,
    remove_pis=True,
    encoding="utf-8",
)

_DTD_RE = re.compile(r"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_XML_WS = " \t\r\n"
_CLIP = 40
_MAX_DUMP_DEPTH = 32
_TWO_PLACES = Decimal("0.01")
_LIST_ITEM_TAGS = {"ACTION_LIST": "record", "ITEM_LIST": "item", "GUEST_LIST": "guest"}
_POSITION_SUFFIX = re.compile(r",?\s*line \d+, column \d+\s*$")

def _clip(text: str) -> str:
    """Quote at most 40 characters of document-supplied text (repr, so control chars are escaped)."""
    if len(text) > _CLIP:
        return repr(text[:_CLIP]) + "..."
    return repr(text)


def is_xml_content_type(content_type: str | None) -> bool:
    """True for ``application/xml``, ``text/xml`` and any ``type/subtype+xml``, parameters allowed."""
    if not isinstance(content_type, str):
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in ("application/xml", "text/xml"):
        return True
    main, sep, sub = media_type.partition("/")
    return bool(sep) and bool(main.strip()) and sub.endswith("+xml") and len(sub) > len("+xml")


# --------------------------------------------------------------------------------------------- parse


def parse_request(
    body: bytes | str,
    *,
    max_bytes: int = 262_144,
    max_depth: int = 8,
    max_elements: int = 2_000,
) -> dict[str, object]:
    """Parse an XML request body into a dict of fields (see the module docstring for the mapping).

    Raises ``XmlError`` (and nothing else) for oversize, non-UTF-8, malformed or unsafe documents.
    """
    try:
        return _parse_request(body, max_bytes=max_bytes, max_depth=max_depth, max_elements=max_elements)
    except XmlError:
        raise
    except Exception as exc:  # the contract: nothing but XmlError escapes, whatever the input
        raise XmlError(f"XML: could not parse document ({type(exc).__name__})") from None


def _parse_request(body: object, *, max_bytes: int, max_depth: int, max_elements: int) -> dict[str, object]:
    data, text = _to_utf8(body, max_bytes)
    if _DTD_RE.search(text):
        raise XmlError(DTD_NOT_ALLOWED)
    root = _parse_bytes(data)
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlError(DTD_NOT_ALLOWED)
    _check_shape(root, max_depth=max_depth, max_elements=max_elements)
    return _record(root)


def _to_utf8(body: object, max_bytes: int) -> tuple[bytes, str]:
    """Return the body as UTF-8 bytes and as text, enforcing the size limit first."""
    if isinstance(body, str):
        if len(body) > max_bytes:  # every character is at least one UTF-8 byte
            raise XmlError(f"XML: body exceeds {max_bytes} bytes")
        try:
            data = body.encode("utf-8")
        except UnicodeEncodeError:
            raise XmlError("XML: body is not valid Unicode (lone surrogate)") from None
        if len(data) > max_bytes:
            raise XmlError(f"XML: body exceeds {max_bytes} bytes")
        return data, body
    if isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body)
        if len(data) > max_bytes:
            raise XmlError(f"XML: body exceeds {max_bytes} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise XmlError(f"XML: body is not valid UTF-8 (byte offset {exc.start})") from None
        return data, text
    raise XmlError(f"XML: body must be bytes or str, not {type(body).__name__}")


def _parse_bytes(data: bytes) -> Any:
    if not data.strip(b" \t\r\n"):
        raise XmlError("XML: empty body")
    try:
        return etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise XmlError(f"XML: malformed document: {_syntax_reason(exc)}") from None
    except (etree.LxmlError, ValueError, TypeError) as exc:
        raise XmlError(f"XML: malformed document ({type(exc).__name__})") from None


def _syntax_reason(exc: Any) -> str:
    """First line of lxml's message, each word clipped to 40 characters, plus the position."""
    raw = getattr(exc, "msg", None) or str(exc) or "syntax error"
    first = _POSITION_SUFFIX.sub("", str(raw).strip().splitlines()[0] if str(raw).strip() else "")
    words = [w if len(w) <= _CLIP else w[:_CLIP] + "..." for w in first.split()]
    reason = " ".join(words)[:200] or "syntax error"
    position = getattr(exc, "position", None)
    if isinstance(position, tuple) and len(position) == 2 and all(isinstance(p, int) for p in position):
        reason += f" (line {position[0]}, column {position[1]})"
    return reason


def _check_shape(root: Any, *, max_depth: int, max_elements: int) -> None:
    """Walk the tree once (iteratively): depth, element count, stray entity references."""
    count = 0
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        count += 1
        if count > max_elements:
            raise XmlError(f"XML: more than {max_elements} elements")
        if depth > max_depth:
            raise XmlError(f"XML: nesting deeper than {max_depth} levels")
        for child in element:
            if isinstance(child.tag, str):
                stack.append((child, depth + 1))
            elif child.tag is etree.Entity:
                raise XmlError(DTD_NOT_ALLOWED)
            # comments / processing instructions are dropped by the parser; anything else is ignored


def _name(element: Any) -> str:
    return str(etree.QName(element).localname)


def _children(element: Any) -> list[Any]:
    return [child for child in element if isinstance(child.tag, str)]


def _is_list_name(name: str) -> bool:
    return name.endswith("_LIST") and name.isupper()


def _record(element: Any) -> dict[str, object]:
    """An element whose children are fields (the root, list records, nested dicts)."""
    if not _children(element) and (element.text or "").strip(_XML_WS):
        raise XmlError(f"XML: element {_clip(_name(element))} holds text where fields were expected")
    _reject_mixed(element)
    fields: dict[str, object] = {}
    for child in _children(element):
        key = _name(child)
        if key in fields:
            raise XmlError(f"XML: field {_clip(key)} is repeated")
        fields[key] = _value(child)
    return fields


def _value(element: Any) -> object:
    children = _children(element)
    name = _name(element)
    if not children:
        text = (element.text or "").strip(_XML_WS)
        if not text and _is_list_name(name):
            return []
        return text
    tags = {_name(child) for child in children}
    if len(tags) == 1 and (len(children) > 1 or _is_list_name(name)):
        _reject_mixed(element)
        return [_record(child) if _children(child) else _value(child) for child in children]
    return _record(element)


def _reject_mixed(element: Any) -> None:
    children = _children(element)
    if not children:
        return
    texts = [element.text] + [child.tail for child in element]
    if any(t and t.strip(_XML_WS) for t in texts):
        raise XmlError(f"XML: element {_clip(_name(element))} mixes text and child elements")


# ---------------------------------------------------------------------------------------------- dump


def dump_response(body: Mapping[str, object], *, root: str = "response") -> bytes:
    """Serialise a response mapping as UTF-8 XML with a declaration (see the module docstring)."""
    if not isinstance(body, Mapping):
        raise XmlError(f"XML: response body must be a mapping, not {type(body).__name__}")
    root_element = etree.Element(_check_name(root))
    _fill(root_element, body, depth=1)
    try:
        payload: bytes = etree.tostring(root_element, encoding="UTF-8", xml_declaration=False)
    except (etree.LxmlError, ValueError) as exc:
        raise XmlError(f"XML: response cannot be serialised ({type(exc).__name__})") from None
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + payload


def _check_name(key: object) -> str:
    if not isinstance(key, str):
        raise XmlError(f"XML: key must be a string, not {type(key).__name__}")
    if not is_xml_name(key):
        raise XmlError(f"XML: key {_clip(key)} is not a valid XML element name")
    return key


def _fill(element: Any, mapping: Mapping[Any, object], *, depth: int) -> None:
    if depth > _MAX_DUMP_DEPTH:
        raise XmlError(f"XML: response nests deeper than {_MAX_DUMP_DEPTH} levels")
    for key, value in mapping.items():
        name = _check_name(key)
        if value is None:
            continue
        try:
            child = etree.SubElement(element, name)
        except ValueError:
            raise XmlError(f"XML: key {_clip(name)} is not a valid XML element name") from None
        _put(child, name, value, depth=depth + 1)


def _put(element: Any, name: str, value: object, *, depth: int) -> None:
    if depth > _MAX_DUMP_DEPTH:
        raise XmlError(f"XML: response nests deeper than {_MAX_DUMP_DEPTH} levels")
    if isinstance(value, Mapping):
        _fill(element, value, depth=depth)
    elif isinstance(value, list | tuple):
        item_tag = _LIST_ITEM_TAGS.get(name, "item")
        for item in value:
            if item is not None:
                _put(etree.SubElement(element, item_tag), item_tag, item, depth=depth + 1)
    else:
        text = xml_text(_scalar(name, value))  # NUL and C0 controls, which XML cannot carry, become U+FFFD
        try:
            element.text = text
        except ValueError:
            raise XmlError(f"XML: value of {_clip(name)} has characters not allowed in XML") from None


def _scalar(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return int.__repr__(value)  # plain digits, also for IntEnum / (int, Enum) members
        except ValueError:  # more digits than sys.get_int_max_str_digits() allows
            raise XmlError(f"XML: value of {_clip(name)} is too large") from None
    if isinstance(value, float | Decimal):
        return _real(name, value)
    if isinstance(value, str):
        return str.__str__(value)  # the string data itself, also for (str, Enum) members
    raise XmlError(f"XML: value of {_clip(name)} has unsupported type {type(value).__name__}")


def _real(name: str, value: float | Decimal) -> str:
    """The spec's type 'real': integer part, '.', two decimals (half-up rounding)."""
    number = Decimal(repr(value)) if isinstance(value, float) else value
    if not number.is_finite():
        raise XmlError(f"XML: value of {_clip(name)} is not a finite number")
    try:
        context = Context(prec=max(28, number.adjusted() + 4))
        rounded = number.quantize(_TWO_PLACES, rounding=ROUND_HALF_UP, context=context)
    except (InvalidOperation, ValueError, OverflowError):
        raise XmlError(f"XML: value of {_clip(name)} cannot be written as a real") from None
    if rounded.is_zero():
        rounded = abs(rounded)
    return f"{rounded:f}"
