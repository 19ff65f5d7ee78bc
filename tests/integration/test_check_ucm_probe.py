"""check-ucm from inside the VPC: the dispatcher function's probe entry point against the UCM simulator on moto,
and the CLI's remote path, which invokes that function (moto cannot run a Lambda without Docker, so the Invoke
call is stubbed at the botocore level with the answer the handler really gave)."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from pms_connector import operator
from pms_connector.cli import main
from pms_connector.outbox import OutboxStore
from pms_connector.ucm.client import ucm_token
from pms_connector.ucm.simulator import UcmSimulator
from tests.conftest import Deployment, IamRecorder, load_event, property_document

DISPATCHER = "DispatcherFunction"
FUNCTION = "pms-connector-test-DispatcherFunction-AbC123"  # as CloudFormation names a deployed one
STACK = "pms-connector-probe"
API_PASSWORD, PMS_PASSWORD = "probe-api-password-1", "probe-pms-password-1"
WRONG_API, WRONG_PMS = "probe-wrong-api-password", "probe-wrong-pms-password"
GUEST_DATA = ("Zacarías", "zq@example.org", "+34600111222")


@pytest.fixture(scope="module")
def sim() -> Iterator[UcmSimulator]:
    with UcmSimulator(api_user="cdrapi", api_password=API_PASSWORD, pms_user="admin1", pms_password=PMS_PASSWORD,
                      addresses=["101"]) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def foreign_ca() -> str:
    with UcmSimulator(api_user="x", api_password="y", pms_user="x", pms_password="y", addresses=[]) as other:
        return other.ca_pem


@pytest.fixture(scope="module")
def closed_port() -> int:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def site(dep: Deployment, pid: str, sim: UcmSimulator, **ucm: Any) -> None:
    settings = {"base_url": sim.url, "api_user": "cdrapi", "api_password": API_PASSWORD, "pms_user": "admin1",
                "pms_password": PMS_PASSWORD, "ca_pem": sim.ca_pem, "connect_timeout_seconds": 2.0, **ucm}
    dep.add_property(property_document("demo-hotel", id=pid, ucm=settings))


def check(dep: Deployment, property_id: object) -> dict[str, Any]:
    """The dispatcher's answer to a direct invocation, as the Lambda service would return it (JSON)."""
    answer = dep.invoke(DISPATCHER, {"check_ucm": property_id})
    return json.loads(json.dumps(answer))  # what goes over the wire must be plain JSON


def private_values(sim: UcmSimulator) -> list[str]:
    from pms_connector.config import UcmSettings

    token = ucm_token(UcmSettings(base_url=sim.url, api_user="cdrapi", api_password=API_PASSWORD,
                                  pms_user="admin1", pms_password=PMS_PASSWORD))
    return [API_PASSWORD, PMS_PASSWORD, WRONG_API, WRONG_PMS, token, token.lower(), *GUEST_DATA]


# ------------------------------------------------------------------------------ the dispatcher's probe

CASES = {  # property id: (its ucm settings, exit code, the steps' outcomes)
    "site-ok": ({}, 0, [("dns", True), ("tcp", True), ("tls", True), ("login", True), ("token", True)]),
    "site-password": ({"api_password": WRONG_API}, 5, [("dns", True), ("tcp", True), ("tls", True),
                                                       ("login", False)]),
    "site-token": ({"pms_password": WRONG_PMS}, 5, [("dns", True), ("tcp", True), ("tls", True), ("login", True),
                                                    ("token", False)]),
    "site-ca": ({"ca_pem": "foreign"}, 4, [("dns", True), ("tcp", True), ("tls", False)]),
    "site-closed": ({"base_url": "closed"}, 3, [("dns", True), ("tcp", False)]),
}


@pytest.mark.parametrize("pid", list(CASES))
def test_the_dispatcher_checks_a_ucm_from_where_it_runs(deployment: Deployment, sim: UcmSimulator, foreign_ca: str,
                                                        closed_port: int, pid: str) -> None:
    # Given a site whose UCM settings are right, or wrong in one way
    settings, code, outcomes = CASES[pid]
    replaced = {"foreign": foreign_ca, "closed": f"https://127.0.0.1:{closed_port}"}
    site(deployment, pid, sim, **{key: replaced.get(value, value) for key, value in settings.items()})
    calls_before = len(sim.log())

    # When an operator's check-ucm invokes the dispatcher function with the property's id
    answer = check(deployment, pid)

    # Then it answers each step, stopping at the one that failed, with its reason, time and exit code
    assert answer["property"] == pid and answer["exit_code"] == code, answer
    assert answer["checked_from"] == "the dispatcher function pms-connector-test"
    assert answer["base_url"].startswith("https://127.0.0.1:")
    assert [(s["name"], s["ok"]) for s in answer["steps"]] == outcomes
    assert all(isinstance(s["seconds"], float) and s["seconds"] >= 0 and s["detail"] for s in answer["steps"])
    failed = [s for s in answer["steps"] if s["ok"] is False]
    assert [s["exit_code"] for s in failed] == ([code] if code else [])
    assert answer["error"] is None and answer["problems"] == []
    # and nothing private is in it: no password, no token, no guest data
    for value in private_values(sim):
        assert value not in json.dumps(answer)
    # and the UCM saw at most one request naming no room; the outbox was not touched (no lease, no hold)
    assert {entry["action"] for entry in sim.log()[calls_before:]} <= {None}
    assert OutboxStore(deployment.env["TABLE_NAME"]).meta(pid) is None


def test_a_check_names_the_failed_step_s_setting(deployment: Deployment, sim: UcmSimulator, foreign_ca: str) -> None:
    site(deployment, "site-token", sim, pms_password=WRONG_PMS)
    site(deployment, "site-ca", sim, ca_pem=foreign_ca)

    token = check(deployment, "site-token")["steps"][-1]
    tls = check(deployment, "site-ca")["steps"][-1]

    assert token["detail"].startswith("[16] Auth error: PMS token refused (ucm.pms_user, ucm.pms_password")
    assert tls["detail"].startswith("certificate not trusted: ") and "(ucm.ca_pem, ucm.verify_tls)" in tls["detail"]


def test_a_check_that_cannot_start_says_why(deployment: Deployment, sim: UcmSimulator) -> None:
    # Given a property whose parameter (its secrets are fine) names a time zone that does not exist
    deployment.add_property(property_document("demo-hotel", id="broken-hotel"))
    ssm, name = boto3.client("ssm"), f"{deployment.env['CONFIG_PARAMETER_PREFIX']}/broken-hotel"
    document = json.loads(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    ssm.put_parameter(Name=name, Value=json.dumps({**document, "timezone": "Mars/Olympus"}), Type="String",
                      Overwrite=True)

    unknown = check(deployment, "no-hotel")
    without_ucm = check(deployment, "demo-resort")
    invalid = check(deployment, "broken-hotel")
    not_an_id = check(deployment, {"not": "an id"})

    assert (unknown["exit_code"], unknown["steps"]) == (2, [])
    assert unknown["error"].startswith("no property 'no-hotel'")
    assert (without_ucm["exit_code"], without_ucm["error"]) == (
        2, "property 'demo-resort' has no ucm section: nothing to check")
    assert invalid["exit_code"] == 2 and invalid["error"] is None
    assert "property 'broken-hotel': timezone: unknown IANA time zone 'Mars/Olympus'" in invalid["problems"]
    assert not_an_id["exit_code"] == 2 and "not a property id" in not_an_id["error"]
    assert not sim.log() or all(entry["action"] is None for entry in sim.log())


def test_the_check_reads_only_what_the_dispatcher_s_policy_allows(deployment: Deployment, sim: UcmSimulator,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = IamRecorder()
    made = operator.function_target

    def recorded() -> operator.Target:
        target = made()
        for client in (target.ssm, target.secrets, target.dynamodb):
            client.meta.events.register("provide-client-params.*.*", recorder)
        return target

    monkeypatch.setattr(operator, "function_target", recorded)
    site(deployment, "site-ok", sim)

    assert check(deployment, "site-ok")["exit_code"] == 0
    assert check(deployment, "no-hotel")["exit_code"] == 2

    assert recorder.actions == {"ssm:GetParameter", "secretsmanager:GetSecretValue"}
    assert recorder.actions <= allowed_actions(deployment, DISPATCHER)


def allowed_actions(dep: Deployment, function: str) -> set[str]:
    """The actions the template allows the function: its SAM ``Policies``, or those of the role it names."""
    properties = dep.template.resources[function]["Properties"]
    policies = [p.get("PolicyDocument", p) for p in properties.get("Policies", [])]
    role = properties.get("Role")
    if isinstance(role, dict) and "Fn::GetAtt" in role:
        policies += [p["PolicyDocument"] for p in
                     dep.template.resources[role["Fn::GetAtt"][0]]["Properties"].get("Policies", [])]
    actions: set[str] = set()
    for policy in policies:
        for statement in policy.get("Statement", []):  # a SAM policy template (VPCAccessPolicy) has none
            if statement.get("Effect") == "Allow":
                listed = statement["Action"]
                actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def test_the_sample_event_checks_demo_hotel(deployment: Deployment) -> None:
    """events/dispatcher-check-ucm.json, for `sam local invoke`-style trials. No simulator runs here, so
    demo-hotel's UCM (https://ucm-simulator) is unreachable: exit 3 at the dns or tcp step."""
    answer = deployment.invoke(DISPATCHER, load_event("dispatcher-check-ucm"))

    assert answer["property"] == "demo-hotel" and answer["base_url"] == "https://ucm-simulator"
    assert answer["exit_code"] == 3
    assert answer["steps"][-1]["name"] in ("dns", "tcp") and answer["steps"][-1]["ok"] is False


def test_the_stream_doorbell_is_answered_as_before(deployment: Deployment) -> None:
    assert deployment.invoke(DISPATCHER, {"Records": []}) == {"batchItemFailures": []}
    assert deployment.invoke(DISPATCHER, {}) == {"batchItemFailures": []}


# ------------------------------------------------------------------------ the CLI's remote check-ucm


def create_stack(name: str, dep: Deployment, *, function_output: bool = False, dispatcher: bool = True) -> None:
    """A stack whose Outputs point at the deployment. moto cannot create the function (a role and code), so
    a log group stands in for it: DescribeStackResource reads only its physical id."""
    outputs = {"ConnectorTableName": dep.env["TABLE_NAME"], "ConfigParameterPrefix": dep.env["CONFIG_PARAMETER_PREFIX"],
               "ConfigSecretPrefix": dep.env["CONFIG_SECRET_PREFIX"]}
    if function_output:
        outputs["DispatcherFunctionName"] = FUNCTION
    resources: dict[str, Any] = {"Topic": {"Type": "AWS::SNS::Topic"}}
    if dispatcher:
        resources[DISPATCHER] = {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": FUNCTION}}
    template = {"Resources": resources, "Outputs": {key: {"Value": value} for key, value in outputs.items()}}
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))


@pytest.fixture
def lambda_stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """The CLI's Lambda client, stubbed: every Invoke it makes must be one queued here, with its parameters."""
    client = boto3.client("lambda", region_name="us-east-1")
    monkeypatch.setattr(operator.Target, "lambda_client", property(lambda _self: client))
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def invocation(property_id: str) -> dict[str, Any]:
    return {"FunctionName": FUNCTION, "InvocationType": "RequestResponse",
            "Payload": json.dumps({"check_ucm": property_id}).encode()}


def answered(payload: Any, **extra: Any) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    return {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": StreamingBody(io.BytesIO(body), len(body)),
            **extra}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "\x1b" not in out + err
    return code, out, err


def test_check_ucm_with_a_stack_runs_in_the_dispatcher_function(deployment: Deployment, sim: UcmSimulator,
                                                                lambda_stub: Stubber,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # Given a deployed stack and its dispatcher's answers for a healthy site and one with a wrong token
    create_stack(STACK, deployment)
    site(deployment, "site-ok", sim)
    site(deployment, "site-token", sim, pms_password=WRONG_PMS)
    healthy, refused = check(deployment, "site-ok"), check(deployment, "site-token")
    lambda_stub.add_response("invoke", answered(healthy), invocation("site-ok"))
    lambda_stub.add_response("invoke", answered(refused), invocation("site-token"))
    lambda_stub.add_response("invoke", answered(healthy), invocation("site-ok"))
    calls_before = len(sim.log())

    # When the operator checks them with --stack
    ok = run(capsys, "property", "check-ucm", "site-ok", "--stack", STACK)
    token = run(capsys, "property", "check-ucm", "site-token", "--stack", STACK)
    as_json = run(capsys, "property", "check-ucm", "site-ok", "--stack", STACK, "--json")

    # Then the report is the dispatcher's, printed as a local check is, with the same exit codes
    code, out, err = ok
    assert (code, err) == (0, ""), out + err
    lines = out.splitlines()
    assert lines[0] == f"site-ok: UCM {sim.url}, checked from the dispatcher function pms-connector-test"
    assert [line.split()[:2] for line in lines[1:-1]] == [["dns", "ok"], ["tcp", "ok"], ["tls", "ok"],
                                                          ["login", "ok"], ["token", "ok"]]
    assert all(" ms " in line for line in lines[1:5]) and lines[-1] == "all checks passed"
    code, out, _ = token
    assert code == 5
    assert out.splitlines()[-2].split()[:2] == ["token", "FAIL"]
    assert out.splitlines()[-1] == "check failed (exit 5)"
    code, out, _ = as_json
    assert code == 0 and json.loads(out) == healthy
    # and nothing reached the UCM from the operator's machine: the stub stood in for the function
    assert len(sim.log()) == calls_before
    for value in private_values(sim):
        assert value not in ok[1] + token[1] + as_json[1]


def test_the_function_s_name_comes_from_an_output_when_the_stack_has_one(deployment: Deployment, sim: UcmSimulator,
                                                                         lambda_stub: Stubber,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    create_stack(STACK, deployment, function_output=True, dispatcher=False)
    site(deployment, "site-ok", sim)
    lambda_stub.add_response("invoke", answered(check(deployment, "site-ok")), invocation("site-ok"))

    assert run(capsys, "property", "check-ucm", "site-ok", "--stack", STACK)[0] == 0


def test_from_here_probes_from_this_machine(deployment: Deployment, sim: UcmSimulator, lambda_stub: Stubber,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    create_stack(STACK, deployment)
    site(deployment, "site-ok", sim)

    code, out, _ = run(capsys, "property", "check-ucm", "site-ok", "--stack", STACK, "--from-here")

    assert code == 0  # and no Invoke: the stub has none queued, any call would fail
    assert out.splitlines()[0] == f"site-ok: UCM {sim.url}, checked from this machine"


@pytest.mark.parametrize(("answer", "code", "message"), [
    ({"error": ("ResourceNotFoundException", 404)}, 2,
     f"error: dispatcher function '{FUNCTION}' not found in region us-east-1"),
    ({"error": ("AccessDeniedException", 403)}, 1,
     f"error: not allowed to invoke the dispatcher function '{FUNCTION}': check-ucm needs lambda:InvokeFunction "
     "on it (or --from-here)"),
    ({"payload": {"errorMessage": "2026-01-31T08:00:00Z 1 Task timed out after 60.00 seconds"},
      "FunctionError": "Unhandled"}, 1,
     f"error: the dispatcher function '{FUNCTION}' failed (Unhandled: 2026-01-31T08:00:00Z 1 Task timed out after "
     f"60.00 seconds); its log group /aws/lambda/{FUNCTION} tells more"),
    ({"payload": {"errorType": "RuntimeError", "errorMessage": "missing environment variable(s): TABLE_NAME",
                  "stackTrace": ["  File \"/var/task/app.py\", line 1"]}, "FunctionError": "Unhandled"}, 1,
     f"error: the dispatcher function '{FUNCTION}' failed (RuntimeError: missing environment variable(s): "
     f"TABLE_NAME); its log group /aws/lambda/{FUNCTION} tells more"),
    ({"payload": {"batchItemFailures": []}}, 1,  # a dispatcher deployed before it could check
     f"error: the dispatcher function '{FUNCTION}' did not answer with a check (deployed before it could check a "
     "UCM? deploy the stack again, or use --from-here)"),
    ({"payload": {"property": "x", "base_url": None, "checked_from": "f", "steps": [], "problems": [],
                  "error": "no property 'x' (no parameter /pms-connector/dev/properties/x)", "exit_code": 2}}, 2,
     "error: no property 'x' (no parameter /pms-connector/dev/properties/x)"),
    ({"payload": {"property": "x", "base_url": None, "checked_from": "f", "steps": [], "error": None,
                  "problems": ["property 'x': timezone: unknown IANA time zone 'Mars/Olympus'"], "exit_code": 2}}, 2,
     "error: invalid configuration\nproperty 'x': timezone: unknown IANA time zone 'Mars/Olympus'"),
], ids=["not-found", "access-denied", "timeout", "crash", "old-dispatcher", "unknown-property", "invalid-config"])
def test_what_goes_wrong_with_the_invocation_is_one_clear_error(deployment: Deployment, lambda_stub: Stubber,
                                                                capsys: pytest.CaptureFixture[str],
                                                                answer: dict[str, Any], code: int,
                                                                message: str) -> None:
    create_stack(STACK, deployment)
    if "error" in answer:
        error_code, status = answer["error"]
        lambda_stub.add_client_error("invoke", error_code, "denied or missing", status,
                                     expected_params=invocation("x"))
    else:
        extra = {k: v for k, v in answer.items() if k != "payload"}
        lambda_stub.add_response("invoke", answered(answer["payload"], **extra), invocation("x"))

    exit_code, out, err = run(capsys, "property", "check-ucm", "x", "--stack", STACK)

    assert (exit_code, out, err.rstrip("\n")) == (code, "", message)
    assert "stackTrace" not in err and "/var/task" not in err


def test_a_stack_without_a_dispatcher_is_a_usage_error(deployment: Deployment, lambda_stub: Stubber,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    create_stack(STACK, deployment, dispatcher=False)

    code, _, err = run(capsys, "property", "check-ucm", "demo-hotel", "--stack", STACK)

    assert code == 2
    assert err.strip() == f"error: stack '{STACK}' has no DispatcherFunction resource: is it a pms-connector stack?"
