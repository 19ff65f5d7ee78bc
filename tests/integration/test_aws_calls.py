"""AWS calls per request, counted with botocore's event hooks (the issue's goals, with a warm config cache)."""

from __future__ import annotations

from typing import Any

from tests.conftest import CallCounter, Deployment, IamRecorder
from tests.helpers import RESORT_INGEST_KEY, answer, httppms_event, ingest_event, signed

INGEST, HTTPPMS = "IngestFunction", "HttppmsFunction"


def wake(i: int) -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "WAKE", "room": "101", "mode": "S", "uid": str(i),
            "waketime": "2035-01-02T08:00:00"}


def warm(dep: Deployment) -> None:
    """One request per function so the property config is cached, as in a warm container."""
    dep.invoke(INGEST, ingest_event("demo-hotel", wake(0)))
    dep.invoke(HTTPPMS, httppms_event(signed({"action": "GET_REQUEST", "property": "demo-hotel"})))


def test_ingest_of_98_records_costs_3_calls(deployment: Deployment, aws_calls: CallCounter) -> None:
    """Issue 2's goal was 2 (tail Query + TransactWriteItems); issue 3 keeps room/booking state in the same
    transaction, which needs the current state first: one BatchGetItem more. (demo-resort has no UCM, so
    the wake-ups imply no outbox commands that would need more items.) 98 records, their room and the
    request's marker (which makes a request sent again append nothing) are one transaction's 100 items."""
    warm(deployment)
    deployment.invoke(INGEST, ingest_event("demo-resort", wake(0), key=RESORT_INGEST_KEY))
    aws_calls.reset()
    response = deployment.invoke(INGEST, ingest_event("demo-resort", [wake(i) for i in range(98)],
                                                      key=RESORT_INGEST_KEY))
    assert response["statusCode"] == 202
    assert aws_calls.calls == ["dynamodb.Query", "dynamodb.BatchGetItem", "dynamodb.TransactWriteItems"]


def test_a_request_too_big_for_one_transaction_is_split_in_order(
    deployment: Deployment, aws_calls: CallCounter
) -> None:
    # 100 records + the room they change + the request's marker = 102 items: two transactions, each atomic,
    # in order.
    warm(deployment)
    deployment.invoke(INGEST, ingest_event("demo-resort", wake(0), key=RESORT_INGEST_KEY))
    aws_calls.reset()
    response = deployment.invoke(INGEST, ingest_event("demo-resort", [wake(i) for i in range(100)],
                                                      key=RESORT_INGEST_KEY))
    assert answer(response)["sequence"] == list(range(2, 102))
    assert aws_calls.calls.count("dynamodb.TransactWriteItems") == 2
    assert len(aws_calls) <= 8  # a first plan finds it too big (2 reads), then 3 calls per half


def test_get_request_returning_100_records_costs_at_most_3_calls(
    deployment: Deployment, aws_calls: CallCounter
) -> None:
    warm(deployment)
    deployment.invoke(INGEST, ingest_event("demo-hotel", [wake(i) for i in range(100)]))
    aws_calls.reset()
    body = answer(deployment.invoke(HTTPPMS, httppms_event(signed({"action": "GET_REQUEST",
                                                                     "property": "demo-hotel"}))))
    assert len(body["ACTION_LIST"]) == 100
    assert aws_calls.calls == ["dynamodb.GetItem", "dynamodb.Query", "dynamodb.UpdateItem"]


def test_an_empty_get_request_costs_at_most_2_calls(deployment: Deployment, aws_calls: CallCounter) -> None:
    warm(deployment)
    aws_calls.reset()
    body = answer(deployment.invoke(HTTPPMS, httppms_event(signed({"action": "GET_REQUEST",
                                                                     "property": "demo-hotel"}))))
    assert body == {"code": 0, "description": "OK"}
    assert aws_calls.calls == ["dynamodb.GetItem", "dynamodb.Query"]


def test_a_cold_config_cache_costs_one_ssm_and_one_secrets_call_then_none(
    deployment: Deployment, aws_calls: CallCounter
) -> None:
    deployment.invoke(HTTPPMS, httppms_event(signed({"action": "GET_REQUEST", "property": "demo-hotel"})))
    config_calls = [c for c in aws_calls.calls if not c.startswith("dynamodb")]
    assert config_calls == ["ssm.GetParameter", "secrets-manager.GetSecretValue"]
    aws_calls.reset()
    deployment.invoke(HTTPPMS, httppms_event(signed({"action": "GET_REQUEST", "property": "demo-hotel"})))
    assert all(c.startswith("dynamodb") for c in aws_calls.calls)


def test_unknown_properties_are_remembered_so_probing_costs_no_ssm_calls(
    deployment: Deployment, aws_calls: CallCounter
) -> None:
    for _ in range(5):
        deployment.invoke(HTTPPMS, httppms_event(signed({"action": "GET_REQUEST", "property": "probe-1"})))
    assert [c for c in aws_calls.calls if c.startswith("ssm")] == ["ssm.GetParameter"]


def test_an_inbound_charge_costs_4_calls(deployment: Deployment, aws_calls: CallCounter) -> None:
    warm(deployment)
    aws_calls.reset()
    request = signed({"action": "POST", "property": "demo-hotel", "room": "101", "post_type": "M",
                      "article": "WA", "units": 1, "amount": 2.5})
    deployment.invoke(HTTPPMS, httppms_event(request))
    assert aws_calls.calls == ["dynamodb.Query", "dynamodb.TransactWriteItems", "eventbridge.PutEvents",
                               "dynamodb.UpdateItem"]


# Every API call a function makes must be allowed by its execution role in template.yaml, and the role should
# allow nothing the function never calls (least privilege), beyond what Lambda itself does with the role for
# that function (its logs, traces, stream, network interfaces: tests/conftest.py's lambda_service_actions).
# IAM authorises each item of a TransactWriteItems as its own action (tests/conftest.py's IamRecorder).
def policy_actions(dep: Deployment, function: str) -> set[str]:
    """Every action the function's execution role allows."""
    from tests.conftest import role_statements

    return {action for statement in role_statements(dep.template, function) for action in statement["Action"]}


def code_actions(dep: Deployment, function: str) -> set[str]:
    """The actions the role allows the function's code: all of them but Lambda's own for that function."""
    from tests.conftest import lambda_service_actions

    allowed, lambdas = policy_actions(dep, function), lambda_service_actions(dep.template, function)
    assert lambdas <= allowed, f"{function}: Lambda cannot {sorted(lambdas - allowed)}"
    return allowed - lambdas


def test_the_ingest_policy_allows_exactly_what_ingest_calls(deployment: Deployment, iam: IamRecorder) -> None:
    """Each item of a transaction needs its own action (a Put PutItem, an Update UpdateItem): a check-in at a
    property with a UCM (its due marker is an Update) and a request split in parts (the request's marker is
    an Update after the first part)."""
    from tests.helpers import http_event

    booking = {"datetime": "2026-01-01T10:00:00", "action": "BOOKING", "booking_uid": "b1", "status": "checkin",
               "room": "101", "arrival": "2026-01-01T14:00:00", "departure": "2026-01-03T12:00:00",
               "GUEST_LIST": [{"uid": "g1", "name": "Ana", "surname": "Ruiz", "language": "es"}]}
    assert deployment.invoke(INGEST, ingest_event("demo-hotel", [booking, wake(1)]))["statusCode"] == 202
    split = [{"datetime": "2026-01-01T10:00:00", "action": "DND", "room": str(200 + n), "active": True}
             for n in range(100)]  # 100 records and 100 rooms: more than one transaction holds
    assert deployment.invoke(INGEST, ingest_event("demo-hotel", split))["statusCode"] == 202
    for path, route, params in (("/pms/demo-hotel/inbound", "/pms/{property}/inbound", {}),
                                ("/pms/demo-hotel/rooms/101", "/pms/{property}/rooms/{room}", {"room": "101"}),
                                ("/pms/demo-hotel/rooms", "/pms/{property}/rooms", {})):
        deployment.invoke(INGEST, http_event("GET", path, route=route, path_parameters={"property": "demo-hotel",
                                                                                         **params},
                                             headers={"authorization": "Bearer demo-ingest-key-0123456789abcdef"}))
    assert iam.actions == code_actions(deployment, INGEST)


def test_the_httppms_policy_allows_exactly_what_httppms_calls(deployment: Deployment) -> None:
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    from pms_connector import api
    from tests.conftest import iam_recorder

    deployment.invoke(INGEST, ingest_event("demo-hotel", [wake(1)]))
    # A fresh container for httppms: its own config reads (the in-process cache is shared with ingest).
    for provider in DEFAULT_PROVIDERS.values():
        provider.clear_cache()
    api.directory.cache_clear()
    api.httppms_dependencies.cache_clear()
    iam = iam_recorder()
    for body in ({"action": "GET_REQUEST"}, {"action": "POST", "room": "101", "post_type": "M", "article": "WA",
                                            "units": 1, "amount": 1},
                 {"action": "BILL_REQUEST", "room": "101"}, {"action": "CHECKOUT", "room": "101"},
                 {"action": "GET_REQUEST"}):
        deployment.invoke(HTTPPMS, httppms_event(signed({**body, "property": "demo-hotel"})))
    assert iam.actions == code_actions(deployment, HTTPPMS)
