"""The leak scan itself: it must find what it is meant to find, or "no leak" means nothing."""

from __future__ import annotations

import base64

import pytest

from pms_connector.config import parse_property
from pms_connector.observability import logger
from tests.conftest import property_document
from tests.leakscan import LeakScan, scanning


@pytest.mark.usefixtures("planting_leaks")
def test_a_guest_name_or_secret_in_a_log_line_is_reported() -> None:
    with scanning() as scan:
        prop = parse_property(property_document("demo-hotel"))
        scan.harvest_record([{"action": "BOOKING", "GUEST_LIST": [
            {"uid": "g1", "name": "Zacarías", "surname": "Ibarrondo", "email": "z.ibarrondo@example.com",
             "passport": "PAX99887766"}]}])
        logger.info("checked in", extra={"guest": "Ibarrondo"})          # a leak
        logger.info("room ready", extra={"room": "101"})                  # not one
        assert prop.ingest is not None
        logger.warning(f"bad key {prop.ingest.api_key.get_secret_value()}")  # a leak
    kinds = sorted(leak.kind for leak in scan.leaks())
    assert kinds == ["guest surname", "ingest.api_key of demo-hotel"]
    assert all(leak.value not in str(leak) for leak in scan.leaks())  # the report does not repeat the value


def test_credentials_of_an_authorization_header_are_learned() -> None:
    scan = LeakScan()
    scan.harvest_authorization("Basic " + base64.b64encode(b"pmslink:s3cr3t-pass").decode())
    scan.harvest_authorization("Bearer ingest-key-0123456789")
    assert {"s3cr3t-pass", "ingest-key-0123456789"} <= set(scan.values)


def test_values_of_letters_or_digits_count_only_as_whole_words() -> None:
    scan = LeakScan(values={"Rosa": "guest name", "1234567890": "guest passport"},
                    lines=['{"msg": "Rosario street"}', '{"arn": "arn:aws:123456789012:x"}', '{"guest": "Rosa"}',
                           '{"doc": "P1234567890"}', '{"doc": "1234567890"}'])
    assert [leak.line for leak in scan.leaks()] == ['{"guest": "Rosa"}', '{"doc": "1234567890"}']


def test_encoded_forms_of_a_value_are_found_inside_urls_and_xml() -> None:
    scan = LeakScan()
    scan.harvest_record({"name": "Zoë Ibarrondo"})
    scan.lines = ["GET /pmsapi?format=xml&cmd=%3Cfirst_name%3EZo%C3%AB%20Ibarrondo%3C/first_name%3E",
                  "<first_name>Zoë Ibarrondo</first_name>"]
    assert len(scan.leaks()) == 2


def test_the_derived_ucm_token_of_a_property_is_learned() -> None:
    from pms_connector.config import parse_property
    from pms_connector.ucm.client import ucm_token

    prop = parse_property(property_document("demo-hotel"))
    scan = LeakScan()
    scan.harvest_config(prop)
    assert prop.ucm is not None and ucm_token(prop.ucm) in scan.values

