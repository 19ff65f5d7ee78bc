"""The infra/ templates: they lint clean, a property stack renders a config the connector accepts, and the
network lets the functions reach the AWS endpoints and the sites' UCM port, nothing else.

property.yaml is rendered here by a small evaluator of the intrinsics it uses (Ref, Sub, If, Join, Split,
conditions and rules), with the parameter constraints CloudFormation checks (AllowedValues, AllowedPattern,
lengths, ranges); the rendered SSM value and secret string are merged and validated exactly as the functions
do (merge_secrets + parse_property).
"""

from __future__ import annotations

import base64
import datetime as dt
import fnmatch
import json
import re
import ssl
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pms_connector.config import (
    PROPERTY_ID_PATTERN,
    SECRET_FIELDS,
    SNS_TOPIC_ARN_PATTERN,
    PropertyConfig,
    merge_secrets,
    parse_property,
    split_secrets,
)
from pms_connector.errors import ConfigError
from pms_connector.local.template import Template, _CfnLoader
from tests.conftest import role_statements

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
PROPERTY = INFRA / "property.yaml"
NETWORK = INFRA / "vpn.yaml"
SITE = INFRA / "vpn-site.yaml"
# The pseudo parameters of the local runner's template reader, so names can be compared with template.yaml's.
REGION, ACCOUNT = "us-east-1", "123456789012"

HTTPPMS_PASSWORD = "pmslink-pa55word"
HTTPPMS_TOKEN = "fixed-t0ken-value"
INGEST_KEY = "ingest-k3y-0123456789abcdef"
UCM_API_PASSWORD = "ucm-api-pa55"
UCM_PMS_PASSWORD = "ucm-pms-pa55"
PMS_SERVER_TOKEN = "pms-server-t0ken"


@cache
def load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        doc: dict[str, Any] = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    return doc


# --- a small CloudFormation evaluator ---------------------------------------------------------------

NO_VALUE = object()


class ParameterError(ValueError):
    """A parameter value CloudFormation would refuse before creating anything."""


class Stack:
    """One template evaluated for one set of parameter values."""

    def __init__(self, template: Mapping[str, Any], overrides: Mapping[str, str], stack_name: str = "stack") -> None:
        self.template = template
        self.stack_name = stack_name
        self.params = _checked_parameters(template.get("Parameters", {}), overrides)
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self._conditions[name]

    def rule_failures(self) -> list[str]:
        """The AssertDescriptions of the Rules that fail (CloudFormation refuses the stack for any)."""
        failed = []
        for rule in self.template.get("Rules", {}).values():
            if "RuleCondition" in rule and not self.resolve(rule["RuleCondition"]):
                continue
            failed += [a["AssertDescription"] for a in rule["Assertions"] if not self.resolve(a["Assert"])]
        return failed

    def created(self) -> list[str]:
        """Logical ids of the resources the stack creates (their conditions hold)."""
        return [lid for lid, res in self.template["Resources"].items()
                if "Condition" not in res or self.condition(res["Condition"])]

    def resources(self) -> dict[str, dict[str, Any]]:
        """The resources the stack creates, with their properties resolved."""
        return {lid: {**self.template["Resources"][lid],
                      "Properties": self.resolve(self.template["Resources"][lid].get("Properties", {}))}
                for lid in self.created()}

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(item) for item in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._function(key[4:], arg)
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in value.items()) if v is not NO_VALUE}

    def _function(self, name: str, arg: Any) -> Any:
        if name == "If":
            condition, when_true, when_false = arg
            return self.resolve(when_true if self.condition(condition) else when_false)
        if name == "Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else arg
            return self._sub(text, variables)
        if name == "Join":
            separator, items = arg
            return separator.join(str(v) for v in self.resolve(items))
        if name == "Split":
            separator, text = arg
            return str(self.resolve(text)).split(separator)
        if name == "Equals":
            left, right = self.resolve(arg)
            return str(left) == str(right)
        if name == "Not":
            return not self.resolve(arg[0])
        if name == "And":
            return all(self.resolve(arg))
        if name == "Or":
            return any(self.resolve(arg))
        if name == "Condition":  # the YAML loader's spelling of !Condition
            return self.condition(arg)
        if name == "ImportValue":  # another stack's export: its name stands for it
            return f"import:{self.resolve(arg)}"
        raise NotImplementedError(f"Fn::{name} is not used by the templates this evaluator reads")

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and "::" not in name:
                raise NotImplementedError(f"${{{name}}}: GetAtt is not used by the templates this evaluator reads")
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def ref(self, name: str) -> Any:
        if name in self.params:
            return self.params[name]
        pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws",
                  "AWS::StackName": self.stack_name, "AWS::URLSuffix": "amazonaws.com"}
        if name in pseudo:
            return pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        resource = self.template["Resources"][name]
        props = self.resolve(resource.get("Properties", {}))
        kind = resource["Type"]
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{props['TopicName']}"
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{props['Name']}-AbCdEf"
        if kind == "AWS::SSM::Parameter":
            return props["Name"]
        return f"{name}-physical-id"


def _checked_parameters(specs: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    unknown = set(overrides) - set(specs)
    if unknown:
        raise ParameterError(f"unknown parameters {sorted(unknown)}")
    values = {}
    for name, spec in specs.items():
        if name in overrides:
            value = str(overrides[name])
        elif "Default" in spec:
            value = str(spec["Default"])
        else:
            raise ParameterError(f"{name}: a value is required")
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [str(v) for v in allowed]:
            raise ParameterError(f"{name}: not one of {allowed}")
        if spec["Type"] == "Number":
            number = float(value)
            if number < spec.get("MinValue", float("-inf")) or number > spec.get("MaxValue", float("inf")):
                raise ParameterError(f"{name}: out of range")
        else:
            if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
                raise ParameterError(f"{name}: does not match {spec['AllowedPattern']}")
            if not spec.get("MinLength", 0) <= len(value) <= spec.get("MaxLength", 4096):
                raise ParameterError(f"{name}: bad length")
        values[name] = value
    return values


# --- cfn-lint ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(INFRA.glob("*.yaml")), ids=lambda p: p.name)
def test_infra_template_lints_clean(path: Path) -> None:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(path, ManualArgs(regions=["eu-west-1"]))
    assert [str(m) for m in matches] == []


# --- property.yaml -----------------------------------------------------------------------------------


def ca_certificate() -> tuple[str, str]:
    """A self-signed CA certificate: (PEM, the base64 body on one line as UcmCaCertificate takes it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "UCM6302 test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return pem, base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def md5_with_ucm(**changes: str) -> dict[str, str]:
    params = {
        "Environment": "dev", "PropertyId": "grand-hotel", "PropertyName": "Grand Hotel Málaga",
        "TimeZone": "Europe/Madrid", "HttppmsAuth": "md5", "HttppmsUser": "pmslink",
        "HttppmsPassword": HTTPPMS_PASSWORD, "IngestApiKey": INGEST_KEY,
        "UcmUrl": "https://10.20.0.5:8089", "UcmApiUser": "cdrapi", "UcmApiPassword": UCM_API_PASSWORD,
        "UcmPmsUser": "admin1", "UcmPmsPassword": UCM_PMS_PASSWORD,
        "UcmRooms": '{"101": "1101", "102": "1102"}', "UcmCosMap": '{"0": 1, "1": 4}',
        "FrontDeskEmail": "frontdesk@grand-hotel.example",
    }
    return params | changes


def token_without_ucm(**changes: str) -> dict[str, str]:
    params = {
        "Environment": "prod", "PropertyId": "beach.resort", "PropertyName": "Beach Resort",
        "TimeZone": "America/New_York", "HttppmsAuth": "token", "HttppmsToken": HTTPPMS_TOKEN,
        "HttppmsDelivery": "confirm", "IngestApiKey": INGEST_KEY, "CheckoutPolicy": "accept",
        "GuestDataDays": "14",
    }
    return params | changes


def render(params: Mapping[str, str]) -> tuple[Stack, str, str]:
    """The stack, its SSM parameter value and its secret string."""
    stack = Stack(load(PROPERTY), params, stack_name=f"pms-connector-x-property-{params.get('PropertyId')}")
    assert stack.rule_failures() == []
    resources = stack.resources()
    return stack, resources["PropertyConfig"]["Properties"]["Value"], resources["PropertySecret"]["Properties"][
        "SecretString"]


def load_rendered(params: Mapping[str, str]) -> PropertyConfig:
    """What the functions make of the stack's parameter and secret (directory.py: merge, then validate)."""
    _, value, secret = render(params)
    return parse_property(merge_secrets(json.loads(value), json.loads(secret)))


def test_property_id_pattern_is_the_configs() -> None:
    assert load(PROPERTY)["Parameters"]["PropertyId"]["AllowedPattern"] == PROPERTY_ID_PATTERN


def test_md5_property_with_ucm_renders_a_valid_config() -> None:
    pem, body = ca_certificate()

    config = load_rendered(md5_with_ucm(UcmCaCertificate=body))

    assert (config.id, config.name, config.timezone) == ("grand-hotel", "Grand Hotel Málaga", "Europe/Madrid")
    assert config.httppms.auth == "md5" and config.httppms.user == "pmslink"
    assert config.httppms.password is not None and config.httppms.password.get_secret_value() == HTTPPMS_PASSWORD
    assert config.httppms.token is None and config.httppms.delivery == "remove"
    assert config.ingest.api_key.get_secret_value() == INGEST_KEY
    ucm = config.ucm
    assert ucm is not None
    assert (ucm.base_url, ucm.api_user, ucm.pms_user) == ("https://10.20.0.5:8089", "cdrapi", "admin1")
    assert ucm.api_password.get_secret_value() == UCM_API_PASSWORD
    assert ucm.pms_password.get_secret_value() == UCM_PMS_PASSWORD
    assert (ucm.token_case, ucm.date_format, ucm.verify_tls) == ("upper", "%Y/%m/%d %H:%M", True)
    assert ucm.rooms == {"101": "1101", "102": "1102"} and ucm.address("101") == "1101"
    assert ucm.cos_map == {"0": 1, "1": 4} and ucm.language_map == {}
    assert ucm.ca_pem is not None and "".join(ucm.ca_pem.split()) == "".join(pem.split())
    ssl.create_default_context(cadata=ucm.ca_pem)  # the UCM client's trust anchor loads
    assert config.wakeup.alert_topic_arn == f"arn:aws:sns:{REGION}:{ACCOUNT}:pms-connector-dev-grand-hotel-frontdesk"
    assert (config.wakeup.at_risk_lead_minutes, config.wakeup.result_grace_minutes) == (10, 5)
    assert config.checkout.policy == "decline" and config.privacy.guest_data_days == 30
    assert config.pms_server is None


def test_token_property_without_ucm_renders_a_valid_config() -> None:
    _, value, secret = render(token_without_ucm())
    config = parse_property(merge_secrets(json.loads(value), json.loads(secret)))

    assert "ucm" not in json.loads(value) and config.ucm is None
    assert config.httppms.auth == "token" and config.httppms.user is None and config.httppms.password is None
    assert config.httppms.token is not None and config.httppms.token.get_secret_value() == HTTPPMS_TOKEN
    assert config.httppms.delivery == "confirm" and config.checkout.policy == "accept"
    assert config.privacy.guest_data_days == 14
    # SNS topic names allow no '.': the id's dots become dashes.
    assert config.wakeup.alert_topic_arn == f"arn:aws:sns:{REGION}:{ACCOUNT}:pms-connector-prod-beach-resort-frontdesk"
    assert json.loads(secret) == {"httppms": {"token": HTTPPMS_TOKEN}, "ingest": {"api_key": INGEST_KEY}}


def test_basic_property_in_polling_mode_renders_a_valid_config() -> None:
    config = load_rendered(md5_with_ucm(
        HttppmsAuth="basic", UcmUrl="", UcmVerifyTls="false", PmsServerUrl="https://pms.hotel.lan:8443/httppms",
        PmsServerAuth="token", PmsServerToken=PMS_SERVER_TOKEN, WakeupAtRiskLeadMinutes="20"))

    assert config.httppms.auth == "basic" and config.ucm is None
    assert config.pms_server is not None and config.pms_server.url == "https://pms.hotel.lan:8443/httppms"
    assert config.pms_server.token is not None and config.pms_server.token.get_secret_value() == PMS_SERVER_TOKEN
    assert config.pms_server.user is None and config.wakeup.at_risk_lead_minutes == 20


@pytest.mark.parametrize("params", [md5_with_ucm(UcmCaCertificate=ca_certificate()[1]), token_without_ucm(),
                                    md5_with_ucm(PmsServerUrl="http://10.20.0.9/httppms", PmsServerUser="connector",
                                                 PmsServerPassword="pms-server-pa55")],
                         ids=["md5-ucm", "token", "polling"])
def test_secrets_go_to_the_secret_only(params: dict[str, str]) -> None:
    _, value, secret = render(params)
    config = parse_property(merge_secrets(json.loads(value), json.loads(secret)))

    no_echo = [name for name, spec in load(PROPERTY)["Parameters"].items() if spec.get("NoEcho")]
    for name in no_echo:
        if params.get(name):
            assert params[name] not in value, f"{name} is in the SSM document"
    # The stack writes what split_secrets would: the secret exactly, the document less the defaults it leaves out.
    public, secrets = split_secrets(config)
    assert json.loads(secret) == secrets
    assert {(section, key) for section, fields in secrets.items() for key in fields} <= set(SECRET_FIELDS)
    assert _within(json.loads(value), public)


def _within(part: Any, whole: Any) -> bool:
    """Every key of ``part`` is in ``whole`` with the same value (nested objects compared the same way)."""
    if isinstance(part, dict) and isinstance(whole, dict):
        return all(key in whole and _within(value, whole[key]) for key, value in part.items())
    return bool(part == whole)


def test_typical_document_fits_a_standard_parameter() -> None:
    _, value, _ = render(md5_with_ucm())
    assert len(value.encode("utf-8")) < 4096


def test_bad_time_zone_is_refused_when_the_config_loads() -> None:
    # The template cannot know the IANA list: the name passes its pattern and the load refuses it.
    with pytest.raises(ConfigError, match="timezone: unknown IANA time zone 'Europe/Atlantis'"):
        load_rendered(md5_with_ucm(TimeZone="Europe/Atlantis"))


@pytest.mark.parametrize(("change", "expected"), [
    ({"HttppmsPassword": 'pa"ss'}, "HttppmsPassword"),           # would break the JSON text
    ({"PropertyName": "Hotel \\ Spa"}, "PropertyName"),
    ({"PropertyId": "Grand_Hotel"}, "PropertyId"),
    ({"IngestApiKey": "too-short"}, "IngestApiKey"),
    ({"UcmUrl": "https://10.20.0.5:8089/pmsapi"}, "UcmUrl"),
    ({"UcmCaCertificate": "-----BEGIN CERTIFICATE-----"}, "UcmCaCertificate"),
    ({"HttppmsAuth": "digest"}, "HttppmsAuth"),
])
def test_parameter_constraints_refuse_bad_values(change: dict[str, str], expected: str) -> None:
    with pytest.raises(ParameterError, match=expected):
        Stack(load(PROPERTY), md5_with_ucm(**change))


@pytest.mark.parametrize(("params", "expected"), [
    (md5_with_ucm(HttppmsPassword=""), "HttppmsPassword is required"),
    (token_without_ucm(HttppmsToken=""), "HttppmsToken is required"),
    (md5_with_ucm(UcmApiPassword=""), "UcmApiPassword is required"),
    (token_without_ucm(PmsServerUrl="https://pms.hotel.lan/httppms", PmsServerUser="connector"),
     "PmsServerPassword is required"),
])
def test_rules_refuse_missing_credentials(params: dict[str, str], expected: str) -> None:
    assert expected in " / ".join(Stack(load(PROPERTY), params).rule_failures())


def test_names_match_what_the_main_stack_reads_and_grants() -> None:
    main = Template(ROOT / "template.yaml", parameters={"Environment": "dev"})
    env = main.functions()["HttppmsFunction"].environment
    stack, _, _ = render(md5_with_ucm())
    resources = stack.resources()

    assert resources["PropertyConfig"]["Properties"]["Name"] == f"{env['CONFIG_PARAMETER_PREFIX']}/grand-hotel"
    assert resources["PropertySecret"]["Properties"]["Name"] == f"{env['CONFIG_SECRET_PREFIX']}/grand-hotel"
    topic_arn = stack.ref("FrontDeskTopic")
    grants = [main.resolve(statement["Resource"])
              for function in main.of_type("AWS::Serverless::Function")
              for statement in role_statements(main, function) if "sns:Publish" in statement["Action"]]
    assert any(fnmatch.fnmatchcase(topic_arn, grant) for grant in grants), grants
    assert re.fullmatch(SNS_TOPIC_ARN_PATTERN, topic_arn)


def test_deleting_the_stack_leaves_nothing_behind() -> None:
    resources = load(PROPERTY)["Resources"]
    for logical_id, resource in resources.items():
        assert resource.get("DeletionPolicy", "Delete") == "Delete", logical_id
        assert resource.get("UpdateReplacePolicy", "Delete") == "Delete", logical_id
    assert {r["Type"] for r in resources.values()} == {
        "AWS::SSM::Parameter", "AWS::SecretsManager::Secret", "AWS::SNS::Topic", "AWS::SNS::Subscription"}
    assert set(load(PROPERTY)["Outputs"]) == {"ParameterName", "SecretArn", "FrontDeskTopicArn"}


# --- vpn.yaml and vpn-site.yaml ----------------------------------------------------------------------


def _egress_rules() -> list[tuple[str, dict[str, Any]]]:
    """Every egress rule of the functions' security group, in either template, with where it comes from."""
    network, site = load(NETWORK)["Resources"], load(SITE)["Resources"]
    rules = [("inline", rule) for rule in network["LambdaSecurityGroup"]["Properties"]["SecurityGroupEgress"]]
    for lid, res in network.items():
        if res["Type"] == "AWS::EC2::SecurityGroupEgress" and res["Properties"]["GroupId"] == {
                "Ref": "LambdaSecurityGroup"}:
            rules.append((lid, res["Properties"]))
    for lid, res in site.items():
        if res["Type"] == "AWS::EC2::SecurityGroupEgress":
            assert res["Properties"]["GroupId"] == {
                "Fn::ImportValue": {"Fn::Sub": "${NetworkStackName}-LambdaSecurityGroupId"}}, lid
            rules.append((f"site:{lid}", res["Properties"]))
    return rules


def test_functions_security_group_reaches_only_endpoints_and_site_ports() -> None:
    found = {(rule["IpProtocol"], str(rule["FromPort"]), str(rule["ToPort"]),
              json.dumps({k: v for k, v in rule.items() if k in (
                  "CidrIp", "CidrIpv6", "DestinationPrefixListId", "DestinationSecurityGroupId")}))
             for _, rule in _egress_rules()}

    assert found == {
        ("tcp", "443", "443", json.dumps({"DestinationPrefixListId": {"Ref": "DynamoDbPrefixListId"}})),
        ("tcp", "443", "443", json.dumps({"DestinationSecurityGroupId": {"Ref": "EndpointSecurityGroup"}})),
        ("tcp", "{'Ref': 'UcmPort'}", "{'Ref': 'UcmPort'}", json.dumps({"CidrIp": {"Ref": "SiteCidr"}})),
        ("tcp", "{'Ref': 'PmsServerPort'}", "{'Ref': 'PmsServerPort'}", json.dumps({"CidrIp": {"Ref": "SiteCidr"}})),
    }
    site = load(SITE)
    assert site["Resources"]["PmsServerEgress"]["Condition"] == "HasPmsServerPort"
    assert site["Parameters"]["UcmPort"]["Default"] == 8089  # the UCM's web (and PMS API) port
    assert site["Parameters"]["PmsServerPort"]["Default"] == 0
    # Nothing may reach the functions, and nothing else may add rules to their group.
    network = load(NETWORK)["Resources"]
    assert "SecurityGroupIngress" not in network["LambdaSecurityGroup"]["Properties"]
    for template in (load(NETWORK), site):
        assert not [lid for lid, res in template["Resources"].items()
                    if res["Type"] == "AWS::EC2::SecurityGroupIngress"]


def test_endpoint_security_group_takes_https_from_the_functions_only() -> None:
    props = load(NETWORK)["Resources"]["EndpointSecurityGroup"]["Properties"]
    assert props["SecurityGroupIngress"] == [{
        "Description": "HTTPS from the pms-connector functions", "IpProtocol": "tcp", "FromPort": 443,
        "ToPort": 443, "SourceSecurityGroupId": {"Ref": "LambdaSecurityGroup"}}]
    assert [rule["CidrIp"] for rule in props["SecurityGroupEgress"]] == ["127.0.0.1/32"]


def test_every_aws_api_the_functions_call_has_an_endpoint() -> None:
    resources = load(NETWORK)["Resources"]
    endpoints = {res["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1]: res["Properties"]
                 for res in resources.values() if res["Type"] == "AWS::EC2::VPCEndpoint"}
    subnets = [{"Ref": "PrivateSubnet1"}, {"Ref": "PrivateSubnet2"}]

    assert set(endpoints) == {"dynamodb", "secretsmanager", "ssm", "logs", "monitoring", "events"}
    assert endpoints["dynamodb"]["VpcEndpointType"] == "Gateway"
    assert endpoints["dynamodb"]["RouteTableIds"] == [{"Ref": "PrivateRouteTable"}]
    for service in ("secretsmanager", "ssm", "logs", "monitoring", "events"):
        assert endpoints[service]["VpcEndpointType"] == "Interface", service
        assert endpoints[service]["PrivateDnsEnabled"] is True, service
        assert endpoints[service]["SubnetIds"] == subnets, service
        assert endpoints[service]["SecurityGroupIds"] == [{"Ref": "EndpointSecurityGroup"}], service
    assert not [lid for lid, res in resources.items()
                if res["Type"] in ("AWS::EC2::NatGateway", "AWS::EC2::InternetGateway")]


def test_network_outputs_feed_the_main_template() -> None:
    network = load(NETWORK)
    outputs = network["Outputs"]
    main = load(ROOT / "template.yaml")["Parameters"]

    assert outputs["PrivateSubnetIds"]["Value"] == {
        "Fn::Join": [",", [{"Ref": "PrivateSubnet1"}, {"Ref": "PrivateSubnet2"}]]}
    assert outputs["LambdaSecurityGroupId"]["Value"] == {"Ref": "LambdaSecurityGroup"}
    assert outputs["TransitGatewayId"]["Value"] == {"Ref": "TransitGateway"}
    assert main["SubnetIds"]["Type"] == "List<AWS::EC2::Subnet::Id>"
    assert main["SecurityGroupId"]["Type"] == "AWS::EC2::SecurityGroup::Id"
    # The subnets are two /25 of the /24, in two availability zones.
    stack = Stack(network, {"DynamoDbPrefixListId": "pl-02cd2c6b"})
    assert stack.params["VpcCidr"] == "10.250.0.0/24"
    subnets = [network["Resources"][f"PrivateSubnet{i}"]["Properties"] for i in (1, 2)]
    assert [s["AvailabilityZone"]["Fn::Select"][0] for s in subnets] == [0, 1]
    assert [s["CidrBlock"]["Fn::Select"] for s in subnets] == [
        [i, {"Fn::Cidr": [{"Ref": "VpcCidr"}, 2, 7]}] for i in (0, 1)]


def test_site_imports_only_what_the_network_exports() -> None:
    exported = {out["Export"]["Name"]["Fn::Sub"].removeprefix("${AWS::StackName}-")
                for out in load(NETWORK)["Outputs"].values() if "Export" in out}
    imported = set(re.findall(r'"Fn::ImportValue": \{"Fn::Sub": "\$\{NetworkStackName\}-(\w+)"\}',
                              json.dumps(load(SITE)["Resources"])))
    assert imported and imported <= exported


def test_sites_reach_the_vpc_but_never_each_other() -> None:
    network = load(NETWORK)["Resources"]
    tgw = network["TransitGateway"]["Properties"]
    assert (tgw["DefaultRouteTableAssociation"], tgw["DefaultRouteTablePropagation"]) == ("disable", "disable")
    # The VPC's attachment uses the table with the sites' routes and puts its CIDR in the sites' table.
    assert network["VpcAttachmentAssociation"]["Properties"]["TransitGatewayRouteTableId"] == {"Ref": "VpcRouteTable"}
    assert network["VpcCidrToSites"]["Properties"]["TransitGatewayRouteTableId"] == {"Ref": "SitesRouteTable"}

    site = load(SITE)
    table = {lid: res["Properties"]["TransitGatewayRouteTableId"]["Fn::ImportValue"]["Fn::Sub"]
             for lid, res in site["Resources"].items() if "TransitGatewayRouteTableId" in res["Properties"]}
    assert table == {"SiteAssociation": "${NetworkStackName}-SitesRouteTableId",
                     "SiteStaticRoute": "${NetworkStackName}-VpcRouteTableId"}
    # Nothing propagates into a Transit Gateway route table but the VPC's CIDR into the sites' table: a BGP
    # site's advertisements reach no route table, so no site can claim another's CIDR or a default route.
    propagations = [(lid, res["Properties"]) for template in (network, site["Resources"])
                    for lid, res in template.items() if res["Type"] == "AWS::EC2::TransitGatewayRouteTablePropagation"]
    assert propagations == [("VpcCidrToSites", {"TransitGatewayAttachmentId": {"Ref": "TransitGatewayVpcAttachment"},
                                                 "TransitGatewayRouteTableId": {"Ref": "SitesRouteTable"}})]
    assert site["Resources"]["SiteStaticRoute"]["Properties"]["DestinationCidrBlock"] == {"Ref": "SiteCidr"}
    first_pass = {"CustomerGateway", "VpnConnection", "UcmEgress", "VpnDownAlarm", "VpnOneTunnelAlarm"}
    assert set(Stack(site, SITE_BASE).created()) == first_pass
    static = Stack(site, SITE_BASE | {"VpnAttachmentId": "tgw-attach-0123456789abcdef0", "PmsServerPort": "8443"})
    assert set(static.created()) == first_pass | {"PmsServerEgress", "SiteAssociation", "SiteStaticRoute"}
    # BGP (liveness, failover) routes exactly as static does: the site's CIDR, by a static route.
    bgp = Stack(site, SITE_BASE | {"VpnAttachmentId": "tgw-attach-0123456789abcdef0", "StaticRoutesOnly": "false"})
    assert set(bgp.created()) == first_pass | {"SiteAssociation", "SiteStaticRoute"}
    assert bgp.resources()["VpnConnection"]["Properties"]["StaticRoutesOnly"] == "false"


SITE_BASE = {"NetworkStackName": "pms-connector-dev-network", "SiteName": "grand-hotel",
             "CustomerGatewayIp": "203.0.113.10", "SiteCidr": "192.168.50.0/24",
             "AlarmTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:pms-connector-dev-AlarmTopic-AbCdEf012345"}


def test_each_site_alarms_its_link_state_to_the_connector_s_alarm_topic() -> None:
    """An idle site sends no UCM commands: without these, a dead VPN shows only when a command has waited."""
    site = load(SITE)
    alarms = {lid: res for lid, res in Stack(site, SITE_BASE).resources().items()
              if res["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) == {"VpnDownAlarm", "VpnOneTunnelAlarm"}
    for alarm in alarms.values():
        props = alarm["Properties"]
        assert (props["Namespace"], props["MetricName"]) == ("AWS/VPN", "TunnelState")
        assert props["Dimensions"] == [{"Name": "VpnId", "Value": "VpnConnection-physical-id"}]
        assert props["AlarmActions"] == props["OKActions"] == [SITE_BASE["AlarmTopicArn"]]
        assert (props["ComparisonOperator"], props["Threshold"]) == ("LessThanThreshold", 1)
        assert "grand-hotel" in props["AlarmName"] and "VpnConnection-physical-id" in props["AlarmName"]
        assert "Site grand-hotel" in props["AlarmDescription"]
    down, one = alarms["VpnDownAlarm"]["Properties"], alarms["VpnOneTunnelAlarm"]["Properties"]
    # TunnelState per VpnId has one value per tunnel: the Maximum drops below 1 only when both are down, the
    # Minimum as soon as one is; a connection that reports nothing is taken as down.
    assert (down["Statistic"], down["Period"] * down["EvaluationPeriods"], down["TreatMissingData"]) == (
        "Maximum", 300, "breaching")
    assert (one["Statistic"], one["Period"] * one["DatapointsToAlarm"], one["TreatMissingData"]) == (
        "Minimum", 1800, "notBreaching")
    assert "VpnOneTunnelAlarm" not in Stack(site, SITE_BASE | {"OneTunnelAlarm": "false"}).created()
    # The topic is the main stack's output, and its key lets CloudWatch alarms of the account publish.
    assert "AlarmTopicArn" in load(ROOT / "template.yaml")["Outputs"]
    with pytest.raises(ParameterError, match="AlarmTopicArn"):
        Stack(site, {k: v for k, v in SITE_BASE.items() if k != "AlarmTopicArn"})


def test_the_dashboard_shows_every_site_vpn_without_a_redeploy() -> None:
    body = load(ROOT / "template.yaml")["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert """SEARCH('{AWS/VPN,VpnId} MetricName=\\"TunnelState\\"'""" in body


def test_the_front_desk_topic_is_published_by_the_wakeup_role_only() -> None:
    """The AWS managed aws/sns key serves principals of the account calling SNS: the wake-up function's role,
    the topic's only publisher. An AWS service (CloudWatch, EventBridge) could not publish to it."""
    topic = load(PROPERTY)["Resources"]["FrontDeskTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == "alias/aws/sns"
    main = Template(ROOT / "template.yaml", parameters={"Environment": "dev"})
    publishers = {function for function in main.of_type("AWS::Serverless::Function")
                  for statement in role_statements(main, function) if "sns:Publish" in statement["Action"]}
    assert publishers == {"WakeupFunction"}
    assert "AWS::SNS::TopicPolicy" not in {res["Type"] for res in load(PROPERTY)["Resources"].values()}


# --- template.yaml after the SAM transform -----------------------------------------------------------

# The only actions a role may allow on "*", each because the action takes no other resource:
STAR_ONLY = {
    # X-Ray defines no resource type for sending traces.
    "xray:PutTraceSegments", "xray:PutTelemetryRecords",
    # DynamoDB Streams' ListStreams defines no resource type (the event source mapping calls it).
    "dynamodb:ListStreams",
    # Lambda's network interfaces for a VPC function: DescribeNetworkInterfaces and DescribeSubnets take only
    # "*"; the others act on interfaces whose ids Lambda chooses, and the Lambda guide documents "*" for them.
    # The roles deny all of them to the function's code (DenyToFunctionCode).
    "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
}


class _NoManagedPolicies:
    """samtranslator's managed-policy loader, offline: the template names no managed policy (SAM looks
    names up only for a function's Policies, which no function has)."""

    def load(self) -> dict[str, str]:
        return {}


@cache
def transformed_main() -> dict[str, Any]:
    """template.yaml through the SAM transform, as CloudFormation would run it (offline; code URIs replaced,
    since the transform only checks they are S3 locations)."""
    pytest.importorskip("samtranslator", reason="aws-sam-translator (the SAM transform) is not installed")
    from samtranslator.translator.transform import transform

    template = json.loads(json.dumps(load(ROOT / "template.yaml")))
    for resource in template["Resources"].values():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://bucket/key.zip"
    result: dict[str, Any] = transform(template, {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
                                                  "AWS::Partition": "aws"}, _NoManagedPolicies())
    return result


def _statements(document: Any) -> list[dict[str, Any]]:
    """A policy document's statements, with both branches of every Fn::If."""
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict) and set(value) == {"Fn::If"}:
            walk(value["Fn::If"][1:])
        elif isinstance(value, dict) and "Effect" in value:
            found.append(value)

    walk(document["Statement"])
    return found


def test_after_the_transform_no_role_has_managed_policies_or_a_star_an_arn_could_replace() -> None:
    resources = transformed_main()["Resources"]
    functions = {lid: res for lid, res in resources.items() if res["Type"] == "AWS::Lambda::Function"}
    assert len(functions) == 6
    for lid, function in functions.items():
        # The role is the template's own (SAM generated none), and it is this function's alone.
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        assert role == lid.replace("Function", "ExecutionRole"), lid
    assert len({f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions.values()}) == 6
    documents = []
    for lid, resource in resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            assert not props.get("ManagedPolicyArns"), f"{lid}: {props['ManagedPolicyArns']}"
            documents += [(lid, policy["PolicyDocument"]) for policy in props.get("Policies", [])]
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            documents.append((lid, props["PolicyDocument"]))
    assert len(documents) >= 9  # six functions, the wake-up scheduler role, the two rate rules' roles
    for lid, document in documents:
        for statement in _statements(document):
            if statement["Effect"] != "Allow":
                continue  # a Deny on "*" takes away, it grants nothing
            resource = statement["Resource"]
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if resource == "*" or (isinstance(resource, list) and "*" in resource):
                assert set(actions) <= STAR_ONLY, f"{lid} {statement.get('Sid')}: {sorted(set(actions) - STAR_ONLY)}"
            assert not any(action.endswith("*") and action != "kms:GenerateDataKey*" for action in actions), (
                lid, actions)


def test_each_role_writes_only_its_function_s_own_log_group_and_reads_only_the_table_s_stream() -> None:
    main = Template(ROOT / "template.yaml")
    for function, res in main.of_type("AWS::Serverless::Function").items():
        props = res["Properties"]
        assert "Policies" not in props, function  # SAM would then generate a role with managed policies
        group = props["LoggingConfig"]["LogGroup"]["Ref"]
        assert main.resources[group]["Type"] == "AWS::Logs::LogGroup"
        by_sid = {statement.get("Sid"): statement for statement in role_statements(main, function)}
        assert by_sid["OwnLogs"]["Resource"] == {"Fn::GetAtt": [group, "Arn"]}, function
        assert set(by_sid["OwnLogs"]["Action"]) == {"logs:CreateLogStream", "logs:PutLogEvents"}
        if "ReadStream" in by_sid:
            assert by_sid["ReadStream"]["Resource"] == {"Fn::GetAtt": ["ConnectorTable", "StreamArn"]}
        denied = {a for statement in role_statements(main, function, effect="Deny") for a in statement["Action"]}
        # Lambda's own grants that the code never needs are denied to it (lambda:SourceFunctionArn present).
        infra = {a for sid in ("ReadStream", "ListStreams", "NetworkInterfaces") if sid in by_sid
                 for a in by_sid[sid]["Action"]}
        assert denied == infra, function
    # ApiTracing=on gives the API functions their X-Ray grant; off (the default) leaves them without.
    for tracing, expected in (("off", set()), ("on", {"xray:PutTraceSegments", "xray:PutTelemetryRecords"})):
        api = Template(ROOT / "template.yaml", parameters={"ApiTracing": tracing})
        for function in ("HttppmsFunction", "IngestFunction"):
            granted = {a for statement in role_statements(api, function) for a in statement["Action"]}
            assert granted & {"xray:PutTraceSegments", "xray:PutTelemetryRecords"} == expected, (function, tracing)
