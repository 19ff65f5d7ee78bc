"""Shared fixtures: moto-backed deployment built from template.yaml, handlers loaded unchanged, helpers."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "events"
SPEC = ROOT.parent / "shared" / "specs" / "charpmslink-httppms-equipment-basic-api.txt"

# No real AWS, ever: fake credentials and a fixed region before anything creates a client.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled",
    POWERTOOLS_METRICS_NAMESPACE="PmsConnector",
    POWERTOOLS_SERVICE_NAME="pms-connector",
    POWERTOOLS_DEV="false",
)
for _var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
    os.environ.pop(_var, None)


def load_event(name: str) -> dict[str, Any]:
    """A sample API Gateway event from events/, by file name without extension."""
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))


def demo_documents() -> list[dict[str, Any]]:
    import yaml

    return yaml.safe_load((ROOT / "examples" / "demo-properties.yaml").read_text(encoding="utf-8"))


def property_document(pid: str = "demo-hotel", **overrides: Any) -> dict[str, Any]:
    doc = next(d for d in demo_documents() if d["id"] == pid)
    doc = json.loads(json.dumps(doc))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update(value)
        else:
            doc[key] = value
    return doc


class FakeContext:
    function_name = "pms-connector-test"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:pms-connector-test"
    memory_limit_in_mb = 512
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/pms-connector-test"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@dataclass
class Deployment:
    """The template's resources on moto, the demo properties published, handlers ready to call."""

    template: Any
    names: dict[str, str]
    env: dict[str, str]

    def handler(self, logical_id: str) -> Any:
        return self.template.load_handler(logical_id)

    def invoke(self, logical_id: str, event: dict[str, Any]) -> dict[str, Any]:
        return self.handler(logical_id)(event, FakeContext())

    def add_property(self, document: dict[str, Any]) -> None:
        """Publish one more property to SSM + Secrets Manager, as its stack would."""
        from pms_connector.config import parse_property
        from pms_connector.local.provision import push_properties

        config = parse_property(document)
        push_properties({config.id: config}, parameter_prefix=self.env["CONFIG_PARAMETER_PREFIX"],
                        secret_prefix=self.env["CONFIG_SECRET_PREFIX"])

    def subscribe_bus(self) -> BusTap:
        """An SQS queue receiving every event put on the template's bus."""
        import boto3

        sqs = boto3.client("sqs")
        events = boto3.client("events")
        url = sqs.create_queue(QueueName="bus-tap")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        bus = self.names["EventBus"]
        events.put_rule(Name="tap", EventBusName=bus, EventPattern=json.dumps({"source": ["pms-connector"]}))
        events.put_targets(Rule="tap", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
        return BusTap(sqs, url)


@dataclass
class BusTap:
    sqs: Any
    url: str

    def drain(self) -> list[dict[str, Any]]:
        out = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return out
            for message in got:
                out.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])


class CallCounter:
    """Counts AWS API calls made by the connector's clients, through botocore's event hooks."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, event_name: str, **_: Any) -> None:
        # event_name is "before-call.<service>.<Operation>"
        self.calls.append(event_name.split(".", 1)[1])

    def reset(self) -> None:
        self.calls.clear()

    def __len__(self) -> int:
        return len(self.calls)


@pytest.fixture
def aws_calls(deployment: Deployment) -> CallCounter:
    """Counts every call of the connector's DynamoDB and EventBridge clients and of the config reads."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    from pms_connector import aws

    counter = CallCounter()
    # The providers Powertools' get_parameter/get_secret use, created here so their clients are hooked too.
    DEFAULT_PROVIDERS["ssm"] = parameters.SSMProvider()
    DEFAULT_PROVIDERS["secrets"] = parameters.SecretsProvider()
    clients = [aws.dynamodb(), aws.events(), DEFAULT_PROVIDERS["ssm"].client, DEFAULT_PROVIDERS["secrets"].client]
    for client in clients:
        client.meta.events.register("before-call.*.*", counter)
    return counter


def reset_caches() -> None:
    """Forget clients, settings and cached configs between tests (each test has its own moto)."""
    from aws_lambda_powertools.utilities import parameters

    from pms_connector import api, aws, settings, sites

    for cached in (api.directory, api.store, api.httppms_dependencies, aws.dynamodb, aws.events,
                   settings.get_settings, sites.outbox_store, aws.scheduler, aws.sns):
        cached.cache_clear()
    parameters.clear_caches()


@functools.cache
def _session() -> Any:
    """One boto3 session for the fixtures' own clients: a new session loads every service model again
    (about 0.1 s a client), and mock_aws answers any session's clients alike."""
    import boto3

    return boto3.session.Session(region_name="us-east-1")


@pytest.fixture
def deployment(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    from moto import mock_aws

    from pms_connector.config import parse_properties
    from pms_connector.local.provision import create_resources, push_properties
    from pms_connector.local.runner import faster_dynamodb
    from pms_connector.local.template import Template

    restore = faster_dynamodb()  # moto copies every table a transaction touches; the runner's patch does not
    with contextlib.ExitStack() as stack, mock_aws():
        stack.callback(restore)
        template = Template(TEMPLATE)
        names = create_resources(template, session=_session())
        env: dict[str, str] = {}
        for spec in template.functions().values():  # as the local runner does: every function's variables
            env.update(spec.environment)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        push_properties(
            parse_properties(demo_documents()),
            parameter_prefix=env["CONFIG_PARAMETER_PREFIX"],
            secret_prefix=env["CONFIG_SECRET_PREFIX"],
            session=_session(),
        )
        reset_caches()
        yield Deployment(template, names, env)
        reset_caches()


def local_stamp(tz: str = "Europe/Madrid", now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M:%S")


class IamRecorder:
    """The IAM actions behind each AWS call; a transaction needs the action of each of its items."""

    SERVICE = {"dynamodb": "dynamodb", "ssm": "ssm", "secrets-manager": "secretsmanager",
               "scheduler": "scheduler", "sns": "sns", "eventbridge": "events"}
    TRANSACT = {
        "Put": "PutItem",
        "Update": "UpdateItem",
        "Delete": "DeleteItem",
        "ConditionCheck": "ConditionCheckItem",
    }

    def __init__(self) -> None:
        self.actions: set[str] = set()

    def __call__(self, event_name: str, params: dict[str, Any], **_: Any) -> None:
        _, service, operation = event_name.split(".")
        prefix = self.SERVICE[service]
        if operation == "TransactWriteItems":
            for item in params["TransactItems"]:
                self.actions.update(f"{prefix}:{self.TRANSACT[kind]}" for kind in item)
        else:
            self.actions.add(f"{prefix}:{operation}")


# --- a function's execution role as template.yaml writes it (one AWS::IAM::Role per function) ----------------

# What Lambda itself does with a function's role, by the function's configuration (template.yaml's roles
# comment): write its logs, send its traces, read the stream of a stream event, send a batch it gave up on to
# the on-failure destination, manage the network interfaces of a function in a VPC.
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
TRACE_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
STREAM_ACTIONS = {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                  "dynamodb:ListStreams"}
VPC_ACTIONS = {"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
               "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}
_NO_VALUE = object()


def _condition(template: Any, name: str) -> bool:
    def holds(expr: Any) -> bool:
        (key, arg), = expr.items()
        if key == "Fn::Equals":
            left, right = (template.resolve(v) for v in arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not holds(arg[0])
        if key == "Fn::And":
            return all(holds(v) for v in arg)
        if key == "Fn::Or":
            return any(holds(v) for v in arg)
        if key in ("Condition", "Fn::Condition"):
            return _condition(template, arg)
        raise NotImplementedError(key)

    return holds(template.doc["Conditions"][name])


def evaluated(template: Any, value: Any) -> Any:
    """``value`` with its Fn::If resolved for the template's parameters (AWS::NoValue dropped)."""
    if isinstance(value, list):
        return [v for v in (evaluated(template, item) for item in value) if v is not _NO_VALUE]
    if isinstance(value, dict):
        if value == {"Ref": "AWS::NoValue"}:
            return _NO_VALUE
        if set(value) == {"Fn::If"}:
            name, when_true, when_false = value["Fn::If"]
            return evaluated(template, when_true if _condition(template, name) else when_false)
        return {k: v for k, v in ((k, evaluated(template, v)) for k, v in value.items()) if v is not _NO_VALUE}
    return value


def execution_role(template: Any, function: str) -> str:
    """Logical id of the function's own AWS::IAM::Role (``Role: !GetAtt <id>.Arn``)."""
    role = template.resources[function]["Properties"]["Role"]
    assert set(role) == {"Fn::GetAtt"} and role["Fn::GetAtt"][1] == "Arn", role
    logical_id: str = role["Fn::GetAtt"][0]
    assert template.resources[logical_id]["Type"] == "AWS::IAM::Role", logical_id
    return logical_id


def role_statements(template: Any, function: str, effect: str = "Allow") -> list[dict[str, Any]]:
    """The statements of the function's execution role with that effect, conditions evaluated, each with its
    Action as a list."""
    role = template.resources[execution_role(template, function)]["Properties"]
    assert "ManagedPolicyArns" not in role, f"{function}: a managed policy grants what the tests cannot see"
    statements = []
    for policy in role["Policies"]:
        for statement in evaluated(template, policy["PolicyDocument"]["Statement"]):
            if statement["Effect"] == effect:
                action = statement["Action"]
                statements.append({**statement, "Action": [action] if isinstance(action, str) else action})
    return statements


def lambda_service_actions(template: Any, function: str) -> set[str]:
    """What Lambda does with the function's role, derived from the function's configuration."""
    props = template.resources[function]["Properties"]
    tracing = evaluated(template, props.get("Tracing", template.doc["Globals"]["Function"].get("Tracing")))
    actions = set(LOG_ACTIONS) | (TRACE_ACTIONS if tracing == "Active" else set())
    for event in props.get("Events", {}).values():
        if event["Type"] == "DynamoDB":
            actions |= STREAM_ACTIONS
            if "OnFailure" in event["Properties"].get("DestinationConfig", {}):
                actions.add("sqs:SendMessage")
    if "VpcConfig" in props:
        actions |= VPC_ACTIONS
    return actions


@pytest.fixture
def iam(deployment: Deployment) -> IamRecorder:
    return iam_recorder()


def iam_recorder() -> IamRecorder:
    """An IamRecorder on the clients the functions share in this process (config providers made anew)."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    from pms_connector import aws

    recorder = IamRecorder()
    DEFAULT_PROVIDERS["ssm"] = parameters.SSMProvider()
    DEFAULT_PROVIDERS["secrets"] = parameters.SecretsProvider()
    for client in (aws.dynamodb(), DEFAULT_PROVIDERS["ssm"].client, DEFAULT_PROVIDERS["secrets"].client,
                   aws.scheduler(), aws.sns(), aws.events()):
        client.meta.events.register("provide-client-params.*.*", recorder)
    return recorder


# --- nothing leaks: every line logged during the session is scanned for the secrets and guest data used ---
_SESSION_SCAN: list[Any] = []  # [LeakScan, its context manager] while the session runs


def pytest_sessionstart(session: pytest.Session) -> None:
    from tests.leakscan import LeakScan, scanning

    scan = LeakScan()
    context = scanning(scan)
    context.__enter__()
    _SESSION_SCAN[:] = [scan, context]
    # Every line the product could write in production (LogLevel=DEBUG is allowed) and httpx's request lines
    # (the UCM's GET API puts the command in the URL query) are produced, so the scan sees them. botocore
    # stays quiet: at DEBUG it logs whole request bodies, which is its business, not the product's.
    import logging

    from pms_connector.observability import logger

    logging.getLogger(logger.name).setLevel(logging.DEBUG)
    logging.getLogger("httpx").setLevel(logging.INFO)


def session_scan() -> Any:
    """The session's LeakScan (tests/leakscan.py), for output that does not pass through this process's
    loggers: the local runner's subprocess in the e2e tests (tests.leakscan.RunnerOutput)."""
    return _SESSION_SCAN[0] if _SESSION_SCAN else None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """What each test wrote to stdout and stderr (EMF metric blobs, print()) goes through the scan too."""
    if _SESSION_SCAN:
        from tests.leakscan import feed_captured

        feed_captured(_SESSION_SCAN[0], report)


@pytest.fixture
def planting_leaks() -> Iterator[None]:
    """For tests of the scan itself: the session's scan does not record what they log on purpose."""
    if _SESSION_SCAN:
        _SESSION_SCAN[0].paused = True
    try:
        yield
    finally:
        if _SESSION_SCAN:
            _SESSION_SCAN[0].paused = False


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _SESSION_SCAN:
        return
    scan, context = _SESSION_SCAN
    unread = scan.close_runners()  # every runner stopped and its output read to the last line first
    context.__exit__(None, None, None)
    _SESSION_SCAN.clear()
    leaks = scan.leaks()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(scan.summary(leaks))
        for leak in leaks[:20]:
            reporter.write_line(f"  LEAK {leak}", red=True)
        for problem in unread:
            reporter.write_line(f"  UNREAD {problem}", red=True)
    if leaks or unread:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
