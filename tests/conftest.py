"""Shared fixtures: moto-backed deployment built from template.yaml, handlers loaded unchanged, helpers."""

from __future__ import annotations

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


@pytest.fixture
def deployment(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    from moto import mock_aws

    from pms_connector.config import parse_properties
    from pms_connector.local.provision import create_resources, push_properties
    from pms_connector.local.template import Template

    with mock_aws():
        template = Template(TEMPLATE)
        names = create_resources(template)
        env: dict[str, str] = {}
        for spec in template.functions().values():  # as the local runner does: every function's variables
            env.update(spec.environment)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        push_properties(
            parse_properties(demo_documents()),
            parameter_prefix=env["CONFIG_PARAMETER_PREFIX"],
            secret_prefix=env["CONFIG_SECRET_PREFIX"],
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


@pytest.fixture
def iam(deployment: Deployment) -> IamRecorder:
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
    loggers: the local runner's subprocess in the e2e tests."""
    return _SESSION_SCAN[0] if _SESSION_SCAN else None


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
    context.__exit__(None, None, None)
    _SESSION_SCAN.clear()
    leaks = scan.leaks()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"leak scan: {len(scan.lines)} log lines searched for {len(scan.values)} secret and "
                            f"guest-data values: {len(leaks)} leak(s)")
        for leak in leaks[:20]:
            reporter.write_line(f"  LEAK {leak}", red=True)
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
