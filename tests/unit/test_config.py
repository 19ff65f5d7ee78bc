"""Unit tests for pms_connector.config: property documents, their errors, and the secret split (SSM/Secrets Manager)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pms_connector.config import (
    PropertyConfig,
    load_properties_file,
    merge_secrets,
    parse_properties,
    parse_property,
    split_secrets,
)
from pms_connector.errors import ConfigError

# --- helpers ----------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
DEMO_FILE = ROOT / "examples" / "demo-properties.yaml"

PASSWORD = "s3cret-value"
TOKEN = "t0ken-s3cret-value"
API_KEY = "ingest-k3y-s3cret-0123456789"
SECRETS = (PASSWORD, TOKEN, API_KEY)
DROP = object()  # a change that removes the field


def document(auth: str = "md5", **changes: Any) -> dict[str, Any]:
    """A valid property document with id 'x', changed by dotted paths (``httppms.password=DROP`` removes it)."""
    httppms: dict[str, Any] = {"auth": auth}
    if auth in ("md5", "basic"):
        httppms.update(user="pmslink", password=PASSWORD)
    else:
        httppms["token"] = TOKEN
    doc: dict[str, Any] = {
        "id": "x",
        "name": "X Hotel",
        "timezone": "Europe/Madrid",
        "httppms": httppms,
        "ingest": {"api_key": API_KEY},
    }
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        target = doc
        for part in parents:
            target = target.setdefault(part, {})
        if value is DROP:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return doc


def changed(auth: str = "md5", **changes: Any) -> dict[str, Any]:
    """``document`` taking dotted paths with ``__`` in place of ``.`` (keyword-friendly)."""
    return document(auth, **{key.replace("__", "."): value for key, value in changes.items()})


def config_error(doc: Any) -> str:
    """The ConfigError message parse_property raises for a document."""
    with pytest.raises(ConfigError) as info:
        parse_property(doc)
    return str(info.value)


def file_error(path: Path) -> str:
    """The ConfigError message load_properties_file raises for a file."""
    with pytest.raises(ConfigError) as info:
        load_properties_file(path)
    return str(info.value)


def demo_documents() -> list[dict[str, Any]]:
    return yaml.safe_load(DEMO_FILE.read_text(encoding="utf-8"))


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# --- loading files ----------------------------------------------------------------------------------


def test_given_demo_yaml_when_loaded_then_both_demo_properties_validate() -> None:
    configs = load_properties_file(DEMO_FILE)
    assert set(configs) == {"demo-hotel", "demo-resort"}
    assert configs["demo-hotel"].httppms.auth == "md5"
    assert configs["demo-resort"].httppms.auth == "token"
    assert configs["demo-resort"].httppms.delivery == "confirm"


def test_given_demo_yaml_when_loaded_then_zone_is_the_iana_zone() -> None:
    configs = load_properties_file(DEMO_FILE)
    assert configs["demo-hotel"].zone.key == "Europe/Madrid"


def test_given_demo_as_json_when_loaded_then_same_configs_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "properties.json"
    path.write_text(json.dumps(demo_documents()), encoding="utf-8")
    assert load_properties_file(path) == load_properties_file(DEMO_FILE)


def test_given_json_wrapped_in_properties_key_when_loaded_then_same_configs(tmp_path: Path) -> None:
    path = tmp_path / "properties.json"
    path.write_text(json.dumps({"properties": demo_documents()}), encoding="utf-8")
    assert load_properties_file(path) == load_properties_file(DEMO_FILE)


def test_given_path_as_string_when_loaded_then_accepted() -> None:
    assert set(load_properties_file(str(DEMO_FILE))) == {"demo-hotel", "demo-resort"}


# --- every error names the property and the field ---------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        pytest.param(changed(timezone=DROP), "timezone", id="missing-timezone"),
        pytest.param(changed(timezone="Mars/Olympus"), "timezone", id="unknown-timezone"),
        pytest.param(changed(httppms__auth="digest"), "httppms.auth", id="auth-digest"),
        pytest.param(changed(httppms__password=DROP), "httppms.password", id="md5-without-password"),
        pytest.param(changed(httppms__password=""), "httppms.password", id="md5-empty-password"),
        pytest.param(changed(httppms__user=DROP), "httppms.user", id="md5-without-user"),
        pytest.param(changed("basic", httppms__password=DROP), "httppms.password", id="basic-without-password"),
        pytest.param(changed("token", httppms__token=DROP), "httppms.token", id="token-without-token"),
        pytest.param(changed("token", httppms__token="short"), "httppms.token", id="token-too-short"),
        pytest.param(changed(ingest__api_key="too-short"), "ingest.api_key", id="api-key-too-short"),
        pytest.param(changed(ingest=DROP), "ingest", id="missing-ingest"),
        pytest.param(changed(httppms__delivry="confirm"), "httppms.delivry", id="unknown-key-typo"),
        pytest.param(changed(httppms__delivery="push"), "httppms.delivery", id="unknown-delivery"),
        pytest.param(changed(httppms__md5_window_seconds=0), "httppms.md5_window_seconds", id="window-zero"),
        pytest.param(changed(checkout__policy="maybe"), "checkout.policy", id="unknown-checkout-policy"),
        pytest.param(changed(colour="blue"), "colour", id="unknown-top-level-key"),
    ],
)
def test_given_invalid_field_when_parsed_then_error_names_property_and_field(doc: dict[str, Any], field: str) -> None:
    message = config_error(doc)
    assert f"property 'x': {field}: " in message


def test_given_md5_without_password_when_parsed_then_error_says_required_for_md5() -> None:
    message = config_error(changed(httppms__password=DROP))
    assert "property 'x'" in message
    assert "httppms.password" in message
    assert "md5" in message


def test_given_missing_timezone_when_parsed_then_error_says_required() -> None:
    assert config_error(changed(timezone=DROP)) == "property 'x': timezone: is required"


@pytest.mark.parametrize("pid", ["Demo-Hotel", "demo#1", "-demo", "demo hotel", "demo-hotel\n", "a" * 64])
def test_given_invalid_property_id_when_parsed_then_error_names_id(pid: str) -> None:
    message = config_error(changed(id=pid))
    assert f"property '{pid}': id: " in message


def test_given_document_without_id_when_parsed_then_error_says_no_id() -> None:
    message = config_error(changed(id=DROP))
    assert "property (no id): id: is required" in message


@pytest.mark.parametrize("pid", ["x", "demo-hotel", "hotel.01_a", "0"])
def test_given_valid_property_id_when_parsed_then_accepted(pid: str) -> None:
    assert parse_property(changed(id=pid)).id == pid


def test_given_duplicate_ids_when_parsed_then_error_names_property_and_id() -> None:
    with pytest.raises(ConfigError) as info:
        parse_properties([document(), document()])
    assert "property 'x': id: defined twice" in str(info.value)


def test_given_several_bad_properties_when_parsed_then_every_one_is_reported() -> None:
    with pytest.raises(ConfigError) as info:
        parse_properties([changed(id="a", timezone="Mars/Olympus"), changed(id="b", httppms__auth="digest")])
    assert "property 'a': timezone: " in str(info.value)
    assert "property 'b': httppms.auth: " in str(info.value)


def test_given_list_item_not_an_object_when_parsed_then_error_names_its_index() -> None:
    with pytest.raises(ConfigError) as info:
        parse_properties([document(), "demo-hotel"])
    assert "property #1: must be an object" in str(info.value)


@pytest.mark.parametrize("content", ['{"id": "x"}', '"x"', "42", "null"], ids=["object", "string", "number", "null"])
def test_given_file_without_a_list_when_loaded_then_error_expects_a_list(tmp_path: Path, content: str) -> None:
    path = tmp_path / "properties.json"
    path.write_text(content, encoding="utf-8")
    message = file_error(path)
    assert str(path) in message
    assert "expected a list" in message


def test_given_missing_file_when_loaded_then_error_says_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    message = file_error(path)
    assert str(path) in message
    assert "cannot read" in message


def test_given_directory_when_loaded_then_error_says_cannot_read(tmp_path: Path) -> None:
    assert "cannot read" in file_error(tmp_path)


def test_given_invalid_yaml_when_loaded_then_error_says_not_valid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "properties.yaml"
    path.write_text("- id: x\n  name: [unclosed\n", encoding="utf-8")
    message = file_error(path)
    assert str(path) in message
    assert "not valid YAML" in message


def test_given_invalid_json_when_loaded_then_error_says_not_valid_json(tmp_path: Path) -> None:
    path = tmp_path / "properties.json"
    path.write_text('[{"id": "x",]', encoding="utf-8")
    assert "not valid JSON" in file_error(path)


def test_given_file_with_bad_property_when_loaded_then_error_names_property_and_field(tmp_path: Path) -> None:
    path = tmp_path / "properties.json"
    path.write_text(json.dumps([changed(httppms__auth="digest")]), encoding="utf-8")
    assert "property 'x': httppms.auth: " in file_error(path)


# --- defaults ---------------------------------------------------------------------------------------


def test_given_minimal_document_when_parsed_then_md5_window_is_300_seconds() -> None:
    assert parse_property(document()).httppms.md5_window_seconds == 300


def test_given_minimal_document_when_parsed_then_delivery_is_remove() -> None:
    assert parse_property(document()).httppms.delivery == "remove"


def test_given_minimal_document_when_parsed_then_archive_days_is_7() -> None:
    assert parse_property(document()).httppms.archive_days == 7


def test_given_minimal_document_when_parsed_then_checkout_policy_is_decline() -> None:
    assert parse_property(document()).checkout.policy == "decline"


# --- secrets: split for SSM / Secrets Manager, merged back ------------------------------------------


def configs_with_secrets() -> list[Any]:
    return [
        pytest.param(parse_property(document("md5")), id="md5"),
        pytest.param(parse_property(document("basic")), id="basic"),
        pytest.param(parse_property(document("token")), id="token"),
        *(pytest.param(config, id=pid) for pid, config in load_properties_file(DEMO_FILE).items()),
    ]


@pytest.mark.parametrize("config", configs_with_secrets())
def test_given_config_when_secrets_split_then_public_document_has_no_secret(config: PropertyConfig) -> None:
    public, _ = split_secrets(config)
    assert "password" not in public["httppms"]
    assert "token" not in public["httppms"]
    assert "api_key" not in public.get("ingest", {})
    text = json.dumps(public)
    assert config.ingest.api_key.get_secret_value() not in text
    assert "**" not in text  # no masked placeholder either


@pytest.mark.parametrize("config", configs_with_secrets())
def test_given_config_when_secrets_split_then_secret_document_holds_them(config: PropertyConfig) -> None:
    _, secrets = split_secrets(config)
    assert secrets["ingest"] == {"api_key": config.ingest.api_key.get_secret_value()}
    expected_httppms = {
        key: getattr(config.httppms, key).get_secret_value()
        for key in ("password", "token")
        if getattr(config.httppms, key) is not None
    }
    assert secrets["httppms"] == expected_httppms


@pytest.mark.parametrize("config", configs_with_secrets())
def test_given_split_documents_when_merged_then_config_equals_original(config: PropertyConfig) -> None:
    public, secrets = split_secrets(config)
    assert parse_property(merge_secrets(public, secrets)) == config


def test_given_public_document_when_merged_then_public_document_is_not_modified() -> None:
    public, secrets = split_secrets(parse_property(document()))
    before = copy.deepcopy(public)
    merge_secrets(public, secrets)
    assert public == before


def test_given_secret_with_non_secret_field_when_merged_then_only_secret_fields_taken() -> None:
    public, secrets = split_secrets(parse_property(document()))
    secrets["httppms"]["auth"] = "basic"
    secrets["name"] = "Hijacked"
    merged = merge_secrets(public, secrets)
    assert merged["httppms"]["auth"] == "md5"
    assert merged["name"] == "X Hotel"


@pytest.mark.parametrize("config", configs_with_secrets())
@pytest.mark.parametrize("render", [str, repr], ids=["str", "repr"])
def test_given_config_when_rendered_then_no_secret_value_appears(config: PropertyConfig, render: Any) -> None:
    text = render(config)
    for secret in (config.httppms.password, config.httppms.token, config.ingest.api_key):
        if secret is not None:
            assert secret.get_secret_value() not in text


def test_given_bad_timezone_and_password_when_parsed_then_error_does_not_echo_password() -> None:
    message = config_error(changed(timezone="Mars/Olympus"))
    assert "property 'x': timezone: " in message
    assert PASSWORD not in message


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(changed(httppms__auth="digest"), id="bad-auth"),
        pytest.param(changed(httppms__password=12345678), id="password-not-a-string"),
        pytest.param(changed(httppms__passwrd=PASSWORD), id="password-under-typo-key"),
        pytest.param(changed("token", httppms__token="s3cret"), id="token-too-short"),
        pytest.param(changed(ingest__api_key="tiny-s3cret-key"), id="api-key-too-short"),
        pytest.param(changed(ingest__api_key=[API_KEY]), id="api-key-not-a-string"),
        pytest.param(changed(httppms=PASSWORD), id="secret-as-section"),
    ],
)
def test_given_invalid_document_with_secrets_when_parsed_then_error_does_not_echo_them(doc: dict[str, Any]) -> None:
    message = config_error(doc)
    assert_no_secret(message)
    assert "s3cret" not in message
    assert "12345678" not in message


def test_given_invalid_json_file_with_secrets_when_loaded_then_error_does_not_echo_them(tmp_path: Path) -> None:
    path = tmp_path / "properties.json"
    path.write_text(f'[{{"id": "x", "httppms": {{"password": "{PASSWORD}" "oops"}}}}]', encoding="utf-8")
    assert_no_secret(file_error(path))


def test_given_invalid_yaml_on_a_secret_line_when_loaded_then_error_does_not_echo_secret(tmp_path: Path) -> None:
    path = tmp_path / "properties.yaml"
    path.write_text(
        "- id: x\n"
        "  name: X Hotel\n"
        "  timezone: Europe/Madrid\n"
        "  httppms:\n"
        "    auth: md5\n"
        "    user: pmslink\n"
        f"    password: {PASSWORD}: [\n",
        encoding="utf-8",
    )
    message = file_error(path)
    assert "not valid YAML" in message
    assert PASSWORD not in message
