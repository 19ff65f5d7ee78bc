"""The template's alarms and dashboard watch what the code emits: no widget or alarm on a metric nobody
sends, no metric sent that nobody sees, and the property dimension only where it tells which hotel is in
trouble (each property-level metric is billed per property)."""

from __future__ import annotations

import ast
import json
import re
from typing import Any

import pytest

from pms_connector.local.template import Template
from tests.conftest import ROOT

TEMPLATE = Template(ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE.resources
NAMESPACE = "PmsConnector"
# What tells on-call which hotel is in trouble; everything else counts for the whole deployment.
PER_PROPERTY = {"OutboxOldestPendingAgeSeconds", "OutboxParkedCommands", "UcmUnreachable", "PmsUnreachable",
                "WakeupAtRisk",
                "WakeupFailed"}


def emitted_metrics() -> dict[str, set[str]]:
    """Metric name -> the extra dimensions it is sent with, read from the code's add_metric/metric_by calls."""
    found: dict[str, set[str]] = {}
    for path in [*(ROOT / "layers" / "pms_connector").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        if "local" in path.parts or path.name == "simulator.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute | ast.Name):
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            if func == "add_metric":
                name = next(k.value for k in node.keywords if k.arg == "name")
                assert isinstance(name, ast.Constant), f"{path}: metric names are literals"
                found.setdefault(name.value, set())
            elif func == "metric_by":
                name = node.args[0]
                assert isinstance(name, ast.Constant), f"{path}: metric names are literals"
                found.setdefault(name.value, set()).update(k.arg for k in node.keywords if k.arg)
    return found


def dashboard() -> dict[str, Any]:
    body = RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for name in re.findall(r"\$\{([^}]+)\}", body):
        assert name.split(".")[0] in RESOURCES or name.startswith("AWS::"), f"dashboard names unknown {name}"
    parsed: dict[str, Any] = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))
    return parsed


def dashboard_metrics(board: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for widget in board["widgets"]:
        for row in widget["properties"].get("metrics", []):
            if row[0] == NAMESPACE:
                names.add(row[1])
            elif isinstance(row[0], dict) and "expression" in row[0]:
                expression = row[0]["expression"]
                if f"{{{NAMESPACE}," in expression:
                    names.update(re.findall(r'MetricName="(\w+)"', expression))
    return names


def alarm_metrics() -> set[str]:
    names = set()
    for resource in RESOURCES.values():
        if resource["Type"] == "AWS::CloudWatch::Alarm" and resource["Properties"].get("Namespace") == NAMESPACE:
            names.add(resource["Properties"]["MetricName"])
    return names


def test_every_metric_the_code_sends_is_on_the_dashboard_and_nothing_else_is() -> None:
    sent = set(emitted_metrics())
    assert len(sent) >= 20
    shown = dashboard_metrics(dashboard())
    assert sorted(shown - sent) == [], "dashboard widgets on metrics the code never sends"
    assert sorted(sent - shown) == [], "metrics nobody can see"
    assert sorted(alarm_metrics() - sent) == [], "alarms on metrics the code never sends"


def test_the_property_dimension_is_only_on_what_tells_which_hotel_is_in_trouble() -> None:
    with_property = {name for name, dims in emitted_metrics().items() if "property" in dims}
    assert with_property == PER_PROPERTY


@pytest.mark.parametrize("metric", sorted(PER_PROPERTY))
def test_per_property_metrics_have_a_per_property_widget(metric: str) -> None:
    expressions = [row[0]["expression"] for widget in dashboard()["widgets"]
                   for row in widget["properties"].get("metrics", []) if isinstance(row[0], dict)]
    assert any("{PmsConnector,property,service}" in e and f'"{metric}"' in e for e in expressions)


def test_dashboard_widgets_fit_the_grid_without_overlapping() -> None:
    taken: set[tuple[int, int]] = set()
    for widget in dashboard()["widgets"]:
        x, y, w, h = widget["x"], widget["y"], widget["width"], widget["height"]
        assert x >= 0 and x + w <= 24
        cells = {(cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)}
        assert not cells & taken, widget["properties"].get("title")
        taken |= cells


def test_every_alarm_notifies_the_alarm_topic() -> None:
    alarms = {k: r for k, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert len(alarms) >= 12
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching", name


def test_the_issue_s_alarm_list_is_covered() -> None:
    watched = set()
    for resource in RESOURCES.values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        stats = [props] + [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m]
        watched |= {(s.get("Namespace"), s.get("MetricName")) for s in stats}
    for needed in [("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles"), ("AWS/ApiGateway", "5xx"),
                   ("AWS/ApiGateway", "Latency"), ("AWS/DynamoDB", "WriteThrottleEvents"),
                   ("AWS/DynamoDB", "ReadThrottleEvents"), (NAMESPACE, "OutboxOldestPendingAgeSeconds"),
                   (NAMESPACE, "OutboxParkedCommands"), (NAMESPACE, "WakeupAtRisk"), (NAMESPACE, "WakeupFailed"),
                   ("AWS/SQS", "ApproximateNumberOfMessagesVisible")]:
        assert needed in watched, needed


def test_every_function_has_its_errors_and_throttles_alarms_and_its_log_group() -> None:
    """One alarm per function and metric (billed like one summed alarm, and it names the function)."""
    functions = {k for k, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
    watched: dict[tuple[str, str], str] = {}
    for lid, alarm in RESOURCES.items():
        props = alarm["Properties"] if alarm["Type"] == "AWS::CloudWatch::Alarm" else {}
        if props.get("Namespace") == "AWS/Lambda":
            [dimension] = props["Dimensions"]
            assert dimension["Name"] == "FunctionName"
            key = (dimension["Value"]["Ref"], props["MetricName"])
            assert key not in watched, lid
            watched[key] = lid
            assert (props["Statistic"], props["Threshold"], props["Period"]) == ("Sum", 1, 300), lid
    assert set(watched) == {(f, metric) for f in functions for metric in ("Errors", "Throttles")}
    for function in functions:
        group_id = RESOURCES[function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert group_id == f"{function}Logs"
        group = RESOURCES[group_id]["Properties"]
        assert group["LogGroupName"]["Fn::Sub"].startswith("/aws/lambda/${AWS::StackName}-")
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        # The errors alarm says where to read.
        description = RESOURCES[watched[(function, "Errors")]]["Properties"]["AlarmDescription"]
        assert f"${{{group_id}}}" in description["Fn::Sub"], function
    names = [RESOURCES[f"{f}Logs"]["Properties"]["LogGroupName"]["Fn::Sub"] for f in functions]
    assert len(set(names)) == len(names)
    # The errors table of the dashboard reads every function's group.
    query = next(w["properties"]["query"] for w in dashboard()["widgets"] if w["type"] == "log")
    raw = RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert query.count("SOURCE") == len(functions)
    for function in functions:
        assert f"SOURCE '${{{function}Logs}}'" in raw


def test_the_alarm_topic_uses_a_key_cloudwatch_may_use() -> None:
    """CloudWatch publishes as the cloudwatch.amazonaws.com service: under an AWS managed key (alias/aws/...)
    every notification is refused, so the topic's key is the stack's own and admits CloudWatch alarms."""
    topics = {k for k, r in RESOURCES.items() if r["Type"] == "AWS::SNS::Topic"}
    alarm_topics = {action["Ref"] for r in RESOURCES.values() if r["Type"] == "AWS::CloudWatch::Alarm"
                    for action in r["Properties"]["AlarmActions"] + r["Properties"].get("OKActions", [])}
    assert alarm_topics and alarm_topics <= topics
    for topic in alarm_topics:
        key_ref = RESOURCES[topic]["Properties"]["KmsMasterKeyId"]
        assert not (isinstance(key_ref, str) and (key_ref.startswith("alias/aws/") or "alias/aws/" in key_ref)), (
            f"{topic}: CloudWatch cannot publish to a topic under an AWS managed key")
        key_id = key_ref.get("Ref") or key_ref["Fn::GetAtt"][0]
        key = RESOURCES[key_id]
        assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
        statements = key["Properties"]["KeyPolicy"]["Statement"]
        [cloudwatch] = [s for s in statements if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
        assert cloudwatch["Effect"] == "Allow"
        assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
        assert cloudwatch["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
        assert cloudwatch["Condition"]["ArnLike"]["aws:SourceArn"] == {
            "Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*"}
        # The account can still administer (and the stack delete) the key.
        [admin] = [s for s in statements if s.get("Principal") == {
            "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}]
        assert admin["Action"] == "kms:*"
        aliases = [r for r in RESOURCES.values() if r["Type"] == "AWS::KMS::Alias"
                   and r["Properties"]["TargetKeyId"] == {"Ref": key_id}]
        assert len(aliases) == 1


def test_only_the_api_functions_can_run_untraced_and_never_capture_responses() -> None:
    globals_ = TEMPLATE.doc["Globals"]["Function"]
    assert globals_["Tracing"] == "Active"
    assert globals_["Environment"]["Variables"]["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"
    assert globals_["Environment"]["Variables"]["POWERTOOLS_TRACER_CAPTURE_ERROR"] == "false"
    untraced = {k for k, r in RESOURCES.items()
                if r["Type"] == "AWS::Serverless::Function" and "Tracing" in r["Properties"]}
    assert untraced == {"HttppmsFunction", "IngestFunction"}
    for name in untraced:
        assert RESOURCES[name]["Properties"]["Environment"]["Variables"]["PMS_CONNECTOR_TRACING"] == {
            "Ref": "ApiTracing"}


def test_the_functions_patch_what_they_call() -> None:
    for app in sorted((ROOT / "functions").glob("*/app.py")):
        source = app.read_text(encoding="utf-8")
        assert "@tracer.capture_lambda_handler(capture_response=False, capture_error=False)" in source, app
        patched = " ".join(re.findall(r"trace_calls\(\((.*?)\)\)", source))
        assert '"botocore"' in patched, app
        calls_ucm_or_pms = app.parent.name in ("dispatcher", "sweeper", "poller")
        assert ('"httpx"' in patched) == calls_ucm_or_pms, app


def test_the_stack_outputs_what_the_operator_cli_reads() -> None:
    outputs = TEMPLATE.doc["Outputs"]
    for name in ("ApiUrl", "EventBusName", "ConnectorTableName", "ConfigParameterPrefix", "ConfigSecretPrefix",
                 "AlarmTopicArn", "DashboardUrl"):
        assert name in outputs


def test_the_untraced_stand_in_offers_what_the_code_uses_of_the_tracer() -> None:
    from pms_connector.observability import _Untraced

    used = set()
    for path in [*(ROOT / "layers" / "pms_connector").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        used |= set(re.findall(r"\btracer\.(\w+)", path.read_text(encoding="utf-8")))
    assert used and all(hasattr(_Untraced(), name) for name in used), used


@pytest.mark.parametrize("tracing", ["off", "on"])
def test_the_api_handlers_run_with_the_tracer_off_as_deployed_and_on(tracing: str) -> None:
    import os
    import subprocess
    import sys
    import tempfile

    from tests.helpers import ingest_event

    event = ingest_event("Not A Valid Id!", [{"action": "RS"}])  # refused before any AWS call
    code = ("import json, sys, importlib.util as u; from tests.conftest import FakeContext; "
            "s = u.spec_from_file_location('app', 'functions/ingest/app.py'); m = u.module_from_spec(s); "
            "s.loader.exec_module(m); r = m.lambda_handler(json.load(sys.stdin), FakeContext()); "
            "print(json.dumps({'status': r['statusCode'], 'xray': 'aws_xray_sdk.core' in sys.modules}))")
    env = {**os.environ, "PMS_CONNECTOR_TRACING": tracing, "LAMBDA_TASK_ROOT": tempfile.gettempdir(),
           "AWS_LAMBDA_FUNCTION_NAME": "ingest", "TABLE_NAME": "t", "EVENT_BUS_NAME": "b",
           "CONFIG_PARAMETER_PREFIX": "/p", "CONFIG_SECRET_PREFIX": "s"}
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(event), capture_output=True, text=True,
                          cwd=ROOT, env=env, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"status": 401, "xray": tracing == "on"}
