"""Unit tests for pms_connector.xmlcodec: the XML alternative to JSON on the HTTPPMS API."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from pms_connector import xmlcodec
from pms_connector.xmlcodec import XmlError, dump_response, is_xml_content_type, parse_request

GET_REQUEST_XML = (
    "<request><datetime>2015-01-01T10:11:12</datetime><user>user1</user>"
    "<usertoken>61e7c7371170a948eaf63fa578840025</usertoken><action>GET_REQUEST</action>"
    "<property>myhotel</property></request>"
)
GET_REQUEST_FIELDS = {
    "datetime": "2015-01-01T10:11:12",
    "user": "user1",
    "usertoken": "61e7c7371170a948eaf63fa578840025",
    "action": "GET_REQUEST",
    "property": "myhotel",
}
DTD_MESSAGE = "XML: DTDs and entity declarations are not allowed"

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<request><action>&lol9;</action></request>"""

XXE_FILE = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE request [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<request><action>GET_REQUEST</action><user>&xxe;</user></request>"""


def _nested(levels: int) -> str:
    """<request><l2><l3>...x...</l3></l2></request> with `levels` elements on the path."""
    names = ["request"] + [f"l{i}" for i in range(2, levels + 1)]
    return "".join(f"<{n}>" for n in names) + "x" + "".join(f"</{n}>" for n in reversed(names))


@pytest.fixture
def prescan_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch off the cheap <!DOCTYPE/<!ENTITY pre-scan to prove the parser-level checks hold on their own."""
    monkeypatch.setattr(xmlcodec, "_DTD_RE", re.compile(r"(?!)"))


@pytest.fixture
def http_canary() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server recording every request; a safe parser must never contact it."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'<!ENTITY leak "LEAKED-FROM-NETWORK">')

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _passwd_markers() -> list[str]:
    """Distinctive strings from /etc/passwd (its first line), or the usual root entry."""
    try:
        first = Path("/etc/passwd").read_text(encoding="utf-8", errors="replace").splitlines()[0]
    except (OSError, IndexError):
        first = ""
    return [m for m in (first, "root:x:0:0", "/bin/bash", "/usr/sbin/nologin") if m]


# ------------------------------------------------------------------------------------ content types


@pytest.mark.parametrize(
    "content_type",
    [
        "application/xml",
        "text/xml",
        "Application/XML",
        "TEXT/XML; charset=UTF-8",
        "application/xml;charset=utf-8",
        " application/xml ; charset=iso-8859-1",
        "application/soap+xml",
        "application/atom+xml; charset=utf-8",
        "application/vnd.charpmslink+XML",
    ],
)
def test_given_xml_content_type_when_checked_then_true(content_type: str) -> None:
    assert is_xml_content_type(content_type) is True


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/xml-dtd",
        "xml",
        "+xml",
        "application/+xml",
        "text/html; note=application/xml",
    ],
)
def test_given_non_xml_content_type_when_checked_then_false(content_type: str | None) -> None:
    assert is_xml_content_type(content_type) is False


# -------------------------------------------------------------------------------------- parse basics


def test_given_spec_get_request_xml_when_parsed_then_fields_are_strings() -> None:
    assert parse_request(GET_REQUEST_XML) == GET_REQUEST_FIELDS


def test_given_get_request_as_bytes_with_declaration_and_indentation_when_parsed_then_same_fields() -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<httppms>\n'
        + "".join(f"  <{k}>\n    {v}\n  </{k}>\n" for k, v in GET_REQUEST_FIELDS.items())
        + "</httppms>\n"
    ).encode()
    assert parse_request(body) == GET_REQUEST_FIELDS


def test_given_numbers_and_booleans_when_parsed_then_values_stay_strings() -> None:
    body = "<request><pax>2</pax><main>true</main><adult>false</adult><total>2.50</total></request>"
    assert parse_request(body) == {"pax": "2", "main": "true", "adult": "false", "total": "2.50"}


def test_given_empty_elements_when_parsed_then_empty_strings_and_empty_list_for_list_names() -> None:
    body = "<request><notes/><room>   </room><account></account><GUEST_LIST/></request>"
    assert parse_request(body) == {"notes": "", "room": "", "account": "", "GUEST_LIST": []}


def test_given_attributes_comments_pis_cdata_and_namespaces_when_parsed_then_only_element_text_counts() -> None:
    body = (
        '<p:request xmlns:p="urn:pms" version="2"><?pi ignore me?><!-- a comment -->'
        '<action kind="x">GET_<!-- split -->REQUEST</action>'
        "<notes><![CDATA[<b>bold</b> & more]]></notes><p:room>101</p:room></p:request>"
    )
    assert parse_request(body) == {"action": "GET_REQUEST", "notes": "<b>bold</b> & more", "room": "101"}


def test_given_action_list_with_booking_and_guest_list_when_parsed_then_lists_of_dicts() -> None:
    body = """<response><code>0</code><description>OK</description>
      <ACTION_LIST>
        <record><action>BOOKING</action><room>101</room><pax>2</pax>
          <GUEST_LIST>
            <guest><uid>987654</uid><main>true</main></guest>
          </GUEST_LIST>
        </record>
      </ACTION_LIST></response>"""
    assert parse_request(body) == {
        "code": "0",
        "description": "OK",
        "ACTION_LIST": [
            {
                "action": "BOOKING",
                "room": "101",
                "pax": "2",
                "GUEST_LIST": [{"uid": "987654", "main": "true"}],
            }
        ],
    }


def test_given_repeated_children_under_lowercase_name_when_parsed_then_list() -> None:
    body = "<r><data><item><id>1</id></item><item><id>2</id></item></data><tags><t>a</t><t>b</t></tags></r>"
    assert parse_request(body) == {"data": [{"id": "1"}, {"id": "2"}], "tags": ["a", "b"]}


def test_given_single_child_under_non_list_name_when_parsed_then_nested_dict() -> None:
    body = "<r><data><item><id>1</id></item></data><guest_list><guest><uid>1</uid></guest></guest_list></r>"
    assert parse_request(body) == {"data": {"item": {"id": "1"}}, "guest_list": {"guest": {"uid": "1"}}}


def test_given_children_with_distinct_names_when_parsed_then_nested_dict() -> None:
    assert parse_request("<r><booking><uid>1</uid><room>2</room></booking></r>") == {
        "booking": {"uid": "1", "room": "2"}
    }


@pytest.mark.parametrize(
    "body",
    [
        "<request><room>101</room><room>102</room></request>",
        "<request><booking><room>1</room><room>2</room><uid>3</uid></booking></request>",
        "<request><ACTION_LIST><record><room>1</room><room>2</room></record></ACTION_LIST></request>",
    ],
)
def test_given_field_repeated_at_same_level_when_parsed_then_error_names_field(body: str) -> None:
    with pytest.raises(XmlError, match="field 'room' is repeated"):
        parse_request(body)


@pytest.mark.parametrize(
    "body",
    [
        "<request><booking>text<room>1</room></booking></request>",
        "<request><booking><room>1</room>tail</booking></request>",
        "<request>loose<action>GET_REQUEST</action></request>",
        "<request><GUEST_LIST><guest>x<uid>1</uid></guest></GUEST_LIST></request>",
    ],
)
def test_given_mixed_content_when_parsed_then_error(body: str) -> None:
    with pytest.raises(XmlError, match="mixes text and child elements"):
        parse_request(body)


def test_given_root_holding_only_text_when_parsed_then_error() -> None:
    with pytest.raises(XmlError, match="holds text where fields were expected"):
        parse_request("<request>GET_REQUEST</request>")


def test_given_utf8_bom_when_parsed_then_accepted() -> None:
    assert parse_request(b"\xef\xbb\xbf" + GET_REQUEST_XML.encode()) == GET_REQUEST_FIELDS


def test_given_declaration_naming_latin1_but_utf8_bytes_when_parsed_then_read_as_utf8() -> None:
    body = '<?xml version="1.0" encoding="ISO-8859-1"?><request><name>José</name></request>'.encode()
    assert parse_request(body) == {"name": "José"}


def test_given_str_with_encoding_declaration_when_parsed_then_accepted() -> None:
    assert parse_request('<?xml version="1.0" encoding="UTF-8"?><r><a>ñ</a></r>') == {"a": "ñ"}


# ------------------------------------------------------------------------------------------ dump


def test_given_booking_response_when_dumped_then_record_guest_and_item_tags_and_reals() -> None:
    body = {
        "code": 0,
        "description": "OK",
        "ACTION_LIST": [
            {
                "datetime": "2015-01-01T10:11:12",
                "action": "BOOKING",
                "booking_uid": "qwertyu-1234",
                "status": "checkin",
                "room": "101",
                "pax": 2,
                "GUEST_LIST": [{"uid": "987654", "main": True, "adult": True, "name": "john", "title": None}],
            }
        ],
        "ITEM_LIST": [{"datetime": "2015-01-01T15:16:17", "net": 2.0, "taxes": 0.2, "total": Decimal("2.2")}],
        "bill_total": Decimal("2.2"),
        "notes": None,
    }

    xml = dump_response(body)

    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert b"<total>2.20</total>" in xml
    root = etree.fromstring(xml)
    assert root.tag == "response"
    assert root.findtext("code") == "0"
    assert [c.tag for c in root.find("ACTION_LIST")] == ["record"]
    record = root.find("ACTION_LIST/record")
    assert record.findtext("action") == "BOOKING"
    assert record.findtext("pax") == "2"
    assert [g.tag for g in record.find("GUEST_LIST")] == ["guest"]
    assert record.findtext("GUEST_LIST/guest/main") == "true"
    assert record.find("GUEST_LIST/guest/title") is None
    item = root.find("ITEM_LIST/item")
    assert (item.findtext("net"), item.findtext("taxes"), item.findtext("total")) == ("2.00", "0.20", "2.20")
    assert root.findtext("bill_total") == "2.20"
    assert root.find("notes") is None


def test_given_simple_response_when_dumped_then_exact_bytes() -> None:
    assert dump_response({"code": 0, "description": "OK", "data": None}) == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<response><code>0</code><description>OK</description></response>'
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-7, "-7"),
        (2.5, "2.50"),
        (2.675, "2.68"),
        (0.005, "0.01"),
        (-0.001, "0.00"),
        (123.5, "123.50"),
        (Decimal("2.2"), "2.20"),
        (Decimal("123.456"), "123.46"),
        (Decimal("1E+3"), "1000.00"),
        (Decimal("-1.005"), "-1.01"),
        ("  as is  ", "  as is  "),
        ("a < b & c ]]>", "a < b & c ]]>"),
    ],
)
def test_given_scalar_when_dumped_then_spec_text(value: object, text: str) -> None:
    root = etree.fromstring(dump_response({"v": value}))
    assert root.findtext("v") == text


def test_given_other_list_keys_and_root_name_when_dumped_then_item_tags_and_custom_root() -> None:
    root = etree.fromstring(dump_response({"data": [{"id": "1"}, None, "x"], "empty": []}, root="httppms"))
    assert root.tag == "httppms"
    assert [c.tag for c in root.find("data")] == ["item", "item"]
    assert root.findtext("data/item/id") == "1"
    assert root.find("empty") is not None
    assert len(root.find("empty")) == 0


@pytest.mark.parametrize("key", ["a b", "1abc", "x:y", "", "-a", "<a>", "a/b", "名 前"])
def test_given_key_that_is_not_an_xml_name_when_dumped_then_error(key: str) -> None:
    with pytest.raises(XmlError, match="not a valid XML element name"):
        dump_response({"ok": 1, "nested": {key: "v"}})


def test_given_invalid_root_name_when_dumped_then_error() -> None:
    with pytest.raises(XmlError, match="not a valid XML element name"):
        dump_response({"code": 0}, root="bad root")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({1: "x"}, "key must be a string"),
        ({"a": b"bytes"}, "unsupported type bytes"),
        ({"a": object()}, "unsupported type object"),
        ({"a": float("nan")}, "not a finite number"),
        ({"a": Decimal("Infinity")}, "not a finite number"),
        ({"a": 10**5000}, "too large"),
    ],
)
def test_given_unrepresentable_value_when_dumped_then_error(body: dict[object, object], message: str) -> None:
    with pytest.raises(XmlError, match=message):
        dump_response(body)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["nul\x00byte", "bell\x07", "\ud800 lone", "\ufffe", "vt\x0bff\x0c"])
def test_given_text_xml_cannot_carry_when_dumped_then_each_character_is_u_fffd(text: str) -> None:
    # A guest's record must reach an XML poller even with a stray control character; the JSON answer keeps it.
    written = parse_request(dump_response({"note": text, "tab": "a\tb"}, root="request"))
    assert written["note"] == "".join("\ufffd" if ch in "\x00\x07\ud800\ufffe\x0b\x0c" else ch for ch in text)
    assert written["tab"] == "a\tb"  # what XML can carry is kept


def test_given_self_referencing_dict_when_dumped_then_error_not_recursion() -> None:
    body: dict[str, object] = {}
    body["self"] = body
    with pytest.raises(XmlError, match="deeper than"):
        dump_response(body)


# ------------------------------------------------------------------------------------- round trips


def test_given_booking_response_when_round_tripped_then_values_come_back_as_strings() -> None:
    body = {
        "code": 0,
        "description": "OK",
        "ACTION_LIST": [
            {
                "action": "BOOKING",
                "pax": 2,
                "GUEST_LIST": [{"uid": "1", "main": True}, {"uid": "2", "main": False}],
            },
            {"action": "DND", "room": "101", "status": None},
        ],
        "ITEM_LIST": [{"total": Decimal("2.2")}],
        "GUEST_LIST": [],
        "bill_total": 2.2,
    }
    assert parse_request(dump_response(body)) == {
        "code": "0",
        "description": "OK",
        "ACTION_LIST": [
            {
                "action": "BOOKING",
                "pax": "2",
                "GUEST_LIST": [{"uid": "1", "main": "true"}, {"uid": "2", "main": "false"}],
            },
            {"action": "DND", "room": "101"},
        ],
        "ITEM_LIST": [{"total": "2.20"}],
        "GUEST_LIST": [],
        "bill_total": "2.20",
    }


def test_given_get_request_fields_when_round_tripped_then_identical() -> None:
    assert parse_request(dump_response(GET_REQUEST_FIELDS, root="request")) == GET_REQUEST_FIELDS


def test_given_accented_and_cjk_names_and_values_when_round_tripped_then_unchanged() -> None:
    body = {
        "name": "José María",
        "surname": "Müller-Peñalver",
        "title": "Srta.",
        "notes": "東京タワー 🗼 — ¡Olé! Ça va?",
        "año": "2025",
        "名前": "山田太郎",
        "GUEST_LIST": [{"name": "Zoë", "surname": "Ødegård"}, {"name": "李", "surname": "小龍"}],
    }
    xml = dump_response(body)
    assert "山田太郎".encode() in xml  # written as UTF-8, not as character references
    assert parse_request(xml) == body
    assert parse_request(xml.decode("utf-8")) == body


# -------------------------------------------------------------------------------------- security


def test_given_module_parser_when_used_then_one_shared_instance() -> None:
    parser = xmlcodec._PARSER
    assert isinstance(parser, etree.XMLParser)
    parse_request(GET_REQUEST_XML)
    assert xmlcodec._PARSER is parser


@pytest.mark.parametrize("as_bytes", [True, False])
def test_given_billion_laughs_when_parsed_then_rejected(as_bytes: bool) -> None:
    body: bytes | str = BILLION_LAUGHS.encode() if as_bytes else BILLION_LAUGHS
    with pytest.raises(XmlError) as caught:
        parse_request(body)
    assert str(caught.value) == DTD_MESSAGE


def test_given_billion_laughs_and_no_prescan_when_parsed_then_still_rejected(prescan_disabled: None) -> None:
    # libxml2's amplification guard or our DOCTYPE check, whichever fires first: never an expansion
    with pytest.raises(XmlError) as caught:
        parse_request(BILLION_LAUGHS)
    assert "lollol" not in str(caught.value)


@pytest.mark.parametrize("prescan", ["on", "off"])
def test_given_xxe_file_entity_when_parsed_then_rejected_and_file_never_read(
    prescan: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if prescan == "off":
        monkeypatch.setattr(xmlcodec, "_DTD_RE", re.compile(r"(?!)"))
    with pytest.raises(XmlError) as caught:
        parse_request(XXE_FILE.encode())
    assert str(caught.value) == DTD_MESSAGE
    rendered = repr(caught.value) + str(caught.value.__cause__) + str(caught.value.__context__)
    for marker in _passwd_markers():
        assert marker not in rendered


def test_given_xxe_file_entity_when_parsed_by_the_raw_parser_then_entity_left_unresolved() -> None:
    # What the module's own parser does with the payload, before our checks reject it.
    root = etree.fromstring(XXE_FILE.encode(), xmlcodec._PARSER)
    text = etree.tostring(root, encoding="unicode")
    for marker in _passwd_markers():
        assert marker not in text
    assert "&xxe;" in text


@pytest.mark.parametrize(
    "template",
    [
        # external DTD
        '<?xml version="1.0"?><!DOCTYPE request SYSTEM "{url}/ext.dtd"><request><a>1</a></request>',
        '<!DOCTYPE request PUBLIC "-//X//DTD X//EN" "{url}/pub.dtd"><request><a>1</a></request>',
        # parameter entities (classic out-of-band XXE)
        '<!DOCTYPE request [<!ENTITY % remote SYSTEM "{url}/p.dtd"> %remote;]><request><a>&leak;</a></request>',
        "<!DOCTYPE request [<!ENTITY % p \"<!ENTITY q 'x'>\"> %p;]><request><a>&q;</a></request>",
        # external general entity over the network
        '<!DOCTYPE request [<!ENTITY net SYSTEM "{url}/n.txt">]><request><a>&net;</a></request>',
    ],
)
@pytest.mark.parametrize("prescan", ["on", "off"])
def test_given_external_dtd_or_parameter_entities_when_parsed_then_rejected_without_network(
    template: str,
    prescan: str,
    http_canary: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, hits = http_canary
    if prescan == "off":
        monkeypatch.setattr(xmlcodec, "_DTD_RE", re.compile(r"(?!)"))
    with pytest.raises(XmlError) as caught:
        parse_request(template.format(url=url))
    assert str(caught.value) == DTD_MESSAGE
    assert hits == []
    assert "LEAKED" not in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        "<!doctype request><request/>",
        "<!DocType request []><request/>",
        '<request><a><![CDATA[<!ENTITY x "y">]]></a></request>',
        '<!ENTITY x "y"><request/>',
    ],
)
def test_given_doctype_or_entity_in_any_case_or_place_when_parsed_then_rejected(body: str) -> None:
    with pytest.raises(XmlError, match="DTDs and entity declarations are not allowed"):
        parse_request(body)


def test_given_utf7_declaration_hiding_a_doctype_when_parsed_then_not_decoded_as_utf7() -> None:
    # '+ADw-' is '<' in UTF-7; the parser is pinned to UTF-8 so this is just malformed text.
    body = (
        b'<?xml version="1.0" encoding="UTF-7"?>'
        b"+ADw-+ACE-DOCTYPE r +AFs-+ADw-+ACE-ENTITY x SYSTEM +ACI-file:///etc/passwd+ACI-+AD4-+AF0-+AD4-"
        b"<r><a>&x;</a></r>"
    )
    with pytest.raises(XmlError):
        parse_request(body)
    assert parse_request(b'<?xml version="1.0" encoding="UTF-7"?><r><a>+AOk-</a></r>') == {"a": "+AOk-"}


def test_given_undeclared_entity_reference_when_parsed_then_error() -> None:
    with pytest.raises(XmlError, match="malformed"):
        parse_request("<request><a>&undeclared;</a></request>")


def test_given_predefined_and_character_references_when_parsed_then_decoded() -> None:
    assert parse_request("<r><a>&lt;&amp;&gt;&quot;&apos;&#233;&#x4E2D;</a></r>") == {"a": "<&>\"'é中"}


def test_given_nesting_at_the_limit_when_parsed_then_accepted() -> None:
    result = parse_request(_nested(8))
    for level in range(2, 8):
        assert isinstance(result, dict)
        result = result[f"l{level}"]  # type: ignore[assignment]
    assert result == {"l8": "x"}


@pytest.mark.parametrize("levels", [9, 50, 300, 5_000])
def test_given_deep_nesting_when_parsed_then_rejected(levels: int) -> None:
    with pytest.raises(XmlError):
        parse_request(_nested(levels))


def test_given_custom_depth_limit_when_exceeded_then_message_says_depth() -> None:
    with pytest.raises(XmlError, match="nesting deeper than 3 levels"):
        parse_request(_nested(4), max_depth=3)


def test_given_too_many_elements_when_parsed_then_rejected() -> None:
    body = "<r><data>" + "<i>1</i>" * 2_000 + "</data></r>"
    with pytest.raises(XmlError, match="more than 2000 elements"):
        parse_request(body)
    assert parse_request("<r><data>" + "<i>1</i>" * 1_998 + "</data></r>")["data"] == ["1"] * 1_998


def test_given_custom_element_limit_when_exceeded_then_rejected() -> None:
    with pytest.raises(XmlError, match="more than 5 elements"):
        parse_request(GET_REQUEST_XML, max_elements=5)
    assert parse_request(GET_REQUEST_XML, max_elements=6) == GET_REQUEST_FIELDS


def test_given_oversize_body_when_parsed_then_rejected_before_parsing() -> None:
    padding = "<notes>" + "x" * 262_144 + "</notes>"
    with pytest.raises(XmlError, match="exceeds 262144 bytes"):
        parse_request(f"<r>{padding}</r>")
    with pytest.raises(XmlError, match="exceeds 262144 bytes"):
        parse_request(f"<r>{padding}</r>".encode())


def test_given_body_exactly_at_limit_when_parsed_then_accepted() -> None:
    body = GET_REQUEST_XML.encode()
    assert parse_request(body, max_bytes=len(body)) == GET_REQUEST_FIELDS
    with pytest.raises(XmlError, match="exceeds"):
        parse_request(body, max_bytes=len(body) - 1)


def test_given_str_small_in_chars_but_large_in_utf8_when_parsed_then_limit_counts_bytes() -> None:
    body = "<r><a>" + "中" * 100 + "</a></r>"  # 115 characters, 315 bytes
    with pytest.raises(XmlError, match="exceeds 200 bytes"):
        parse_request(body, max_bytes=200)


@pytest.mark.parametrize(
    "body",
    [
        b"<request><name>\xff\xfe</name></request>",
        b"<request><name>Jos\xe9</name></request>",  # Latin-1, not UTF-8
        b"<request><name>\xc0\xaf</name></request>",  # overlong encoding
        b"<request><name>\xed\xa0\x80</name></request>",  # encoded surrogate
        b"<request><name>\xe6\x9d</name></request>",  # truncated sequence
        b"\xff\xfe<\x00r\x00/\x00>\x00",  # UTF-16 with BOM
    ],
)
def test_given_invalid_utf8_when_parsed_then_rejected(body: bytes) -> None:
    with pytest.raises(XmlError, match="not valid UTF-8"):
        parse_request(body)


def test_given_str_with_lone_surrogate_when_parsed_then_rejected() -> None:
    with pytest.raises(XmlError, match="not valid Unicode"):
        parse_request("<r><a>\udc80</a></r>")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        "",
        b"   \n\t",
        b"not xml at all",
        '{"action": "GET_REQUEST"}',
        b"<request>",
        b"<request><a>1</b></request>",
        b"<request/>trailing",
        b"<a/><b/>",
        b"<request><a>\x00</a></request>",
        b"\x00\x01\x02\x03",
        b"<<<>>>",
        b"<?xml version='1.0'?>",
        b"<request><p:a>1</p:a></request>",
        "<request a='1' a='2'/>",
    ],
)
def test_given_garbage_when_parsed_then_xml_error(body: bytes | str) -> None:
    with pytest.raises(XmlError) as caught:
        parse_request(body)
    assert str(caught.value).startswith("XML: ")


@pytest.mark.parametrize("body", [None, 42, 4.2, ["<r/>"], {"a": 1}, object()])
def test_given_body_of_wrong_type_when_parsed_then_xml_error(body: object) -> None:
    with pytest.raises(XmlError, match="must be bytes or str"):
        parse_request(body)  # type: ignore[arg-type]


def test_given_bytearray_body_when_parsed_then_accepted() -> None:
    assert parse_request(bytearray(GET_REQUEST_XML.encode())) == GET_REQUEST_FIELDS  # type: ignore[arg-type]


def test_given_malformed_document_with_long_names_when_rejected_then_message_quotes_at_most_40_chars() -> None:
    secret = "S" * 39 + "ECRETSECRETSECRET"
    bodies = [
        f"<{secret}><a>1</b></{secret}>",
        f"<r><{secret}>1</{secret}><{secret}>2</{secret}></r>",
        f"<r><{secret}>x<b/></{secret}></r>",
        f"<{secret}>",
        f"<r>{secret}<",
    ]
    for body in bodies:
        with pytest.raises(XmlError) as caught:
            parse_request(body)
        message = str(caught.value)
        assert message.startswith("XML: ")
        assert "ECRETSECRETSECRET" not in message, message
        assert len(message) < 300


def test_given_syntax_error_when_rejected_then_message_has_reason_and_position() -> None:
    with pytest.raises(XmlError) as caught:
        parse_request("<request>\n<a>1</b>\n</request>")
    message = str(caught.value)
    assert message.startswith("XML: malformed document: ")
    assert "line 2" in message
    assert "\n" not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


def test_given_xml_error_when_checked_then_it_is_a_value_error() -> None:
    assert issubclass(XmlError, ValueError)


# ------------------------------------------------------------------------------------- properties

_XML_TOKENS = st.sampled_from(
    [
        "<",
        ">",
        "/>",
        "</",
        "<r>",
        "</r>",
        "<a>",
        "</a>",
        "<a/>",
        "<ACTION_LIST>",
        "</ACTION_LIST>",
        "<record>",
        "</record>",
        "&",
        "&amp;",
        "&#0;",
        "&#x110000;",
        "&lol;",
        "<![CDATA[",
        "]]>",
        "<!--",
        "-->",
        "<?xml version='1.0'?>",
        '<?xml version="1.0" encoding="UTF-16"?>',
        "<?pi x?>",
        "<!DOCTYPE r>",
        "<!doctype",
        "<!ENTITY",
        "%p;",
        "<!ATTLIST",
        'SYSTEM "file:///etc/passwd"',
        "xmlns:p='u'",
        "<p:a>",
        " ",
        "\n",
        "x",
        "é",
        "中",
        "\x00",
        "\ufeff",
        "\ud800",
    ]
)
_XMLISH_TEXT = st.lists(_XML_TOKENS | st.text(max_size=5), max_size=40).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=2_000)
    | st.text(max_size=2_000)
    | _XMLISH_TEXT
    | _XMLISH_TEXT.map(lambda s: s.encode("utf-8", "surrogatepass"))
)
def test_given_arbitrary_input_when_parsed_then_only_xml_error_can_escape(body: bytes | str) -> None:
    try:
        result: object = parse_request(body)
    except XmlError as exc:
        result = exc
    if isinstance(result, XmlError):
        assert str(result).startswith("XML: ")
    else:
        assert isinstance(result, dict)


@settings(max_examples=200, deadline=None)
@given(
    body=_XMLISH_TEXT,
    max_bytes=st.integers(min_value=0, max_value=300),
    max_depth=st.integers(min_value=0, max_value=4),
    max_elements=st.integers(min_value=0, max_value=5),
)
def test_given_arbitrary_input_and_small_limits_when_parsed_then_only_xml_error_can_escape(
    body: str, max_bytes: int, max_depth: int, max_elements: int
) -> None:
    with contextlib.suppress(XmlError):
        parse_request(body, max_bytes=max_bytes, max_depth=max_depth, max_elements=max_elements)


_NAMES = st.from_regex(r"[a-z_][a-z0-9_.\-]{0,8}", fullmatch=True) | st.sampled_from(
    ["año", "名前", "größe", "ñandú", "città", "ключ", "x·y"]
)
_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Cn", "Zl", "Zp")), max_size=20
).map(lambda s: s.strip(" \t\r\n"))
_LIST_NAMES = st.sampled_from(["ACTION_LIST", "GUEST_LIST", "ITEM_LIST", "ROOM_LIST"])


def _records(children: st.SearchStrategy[object]) -> st.SearchStrategy[dict[str, object]]:
    return st.dictionaries(_NAMES, children, min_size=1, max_size=4)


_VALUES = st.recursive(
    _TEXT,
    lambda children: (
        _records(children)
        | st.tuples(_LIST_NAMES, st.lists(_records(children), max_size=3)).map(lambda kv: {kv[0]: kv[1]})
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(body=st.dictionaries(_NAMES, _VALUES, max_size=6))
def test_given_string_records_when_round_tripped_then_identical(body: dict[str, object]) -> None:
    # lists only under ALL-CAPS *_LIST names and no empty dicts, so the round trip is exact
    assert parse_request(dump_response(body), max_depth=64, max_elements=10_000) == body
