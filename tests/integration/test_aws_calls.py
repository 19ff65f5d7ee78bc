"""AWS calls per request, counted with botocore's event hooks (the issue's goals, with a warm config cache)."""

from __future__ import annotations

from typing import Any

from tests.conftest import CallCounter, Deployment
from tests.helpers import RESORT_INGEST_KEY, answer, httppms_event, ingest_event, signed

INGEST, HTTPPMS = "IngestFunction", "HttppmsFunction"


def wake(i: int) -> dict[str, Any]:
    return {"datetime": "2026-01-01T10:00:00", "action": "WAKE", "room": "101", "mode": "S", "uid": str(i),
            "waketime": "2035-01-02T08:00:00"}


def warm(dep: Deployment) -> None:
    """One request per function so the property config is cached, as in a warm container."""
    dep.invoke(INGEST, ingest_event("demo-hotel", wake(0)))
    dep.invoke(HTTPPMS, httppms_event(signed({"action": "GET_REQUEST", "property": "demo-hotel"})))


def test_ingest_of_99_records_costs_3_calls(deployment: Deployment, aws_calls: CallCounter) -> None:
    """Issue 2's goal was 2 (tail Query + TransactWriteItems); issue 3 keeps room/booking state in the same
    transaction, which needs the current state first: one BatchGetItem more. (demo-resort has no UCM, so
    the wake-ups imply no outbox commands that would need more items.)"""
    warm(deployment)
    deployment.invoke(INGEST, ingest_event("demo-resort", wake(0), key=RESORT_INGEST_KEY))
    aws_calls.reset()
    response = deployment.invoke(INGEST, ingest_event("demo-resort", [wake(i) for i in range(99)],
                                                      key=RESORT_INGEST_KEY))
    assert response["statusCode"] == 202
    assert aws_calls.calls == ["dynamodb.Query", "dynamodb.BatchGetItem", "dynamodb.TransactWriteItems"]


def test_a_request_too_big_for_one_transaction_is_split_in_order(
    deployment: Deployment, aws_calls: CallCounter
) -> None:
    # 100 records + the room they change = 101 items: two transactions, each atomic, in order.
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


# Every API call a function makes must be allowed by its policy in template.yaml, and the policy should
# allow nothing the function never calls (least privilege). A TransactWriteItems of Puts is authorised as
# PutItem.
IAM_ACTION = {
    "dynamodb.Query": "dynamodb:Query",
    "dynamodb.GetItem": "dynamodb:GetItem",
    "dynamodb.BatchGetItem": "dynamodb:BatchGetItem",
    "dynamodb.UpdateItem": "dynamodb:UpdateItem",
    "dynamodb.TransactWriteItems": "dynamodb:PutItem",
    "eventbridge.PutEvents": "events:PutEvents",
    "ssm.GetParameter": "ssm:GetParameter",
    "secrets-manager.GetSecretValue": "secretsmanager:GetSecretValue",
}


def policy_actions(dep: Deployment, function: str) -> set[str]:
    actions: set[str] = set()
    for policy in dep.template.resources[function]["Properties"]["Policies"]:
        if "Statement" not in policy:  # a SAM policy template: VPCAccessPolicy lets Lambda attach its ENIs
            assert policy == {"VPCAccessPolicy": {}}, policy
            continue
        for statement in policy["Statement"]:
            actions.update(statement["Action"])
    return actions


def test_the_ingest_policy_allows_exactly_what_ingest_calls(deployment: Deployment, aws_calls: CallCounter) -> None:
    from tests.helpers import http_event

    deployment.invoke(INGEST, ingest_event("demo-hotel", [wake(1), wake(2)]))
    deployment.invoke(INGEST, http_event("GET", "/pms/demo-hotel/inbound", route="/pms/{property}/inbound",
                                         path_parameters={"property": "demo-hotel"},
                                         headers={"authorization": "Bearer demo-ingest-key-0123456789abcdef"}))
    deployment.invoke(INGEST, http_event("GET", "/pms/demo-hotel/rooms/101", route="/pms/{property}/rooms/{room}",
                                         path_parameters={"property": "demo-hotel", "room": "101"},
                                         headers={"authorization": "Bearer demo-ingest-key-0123456789abcdef"}))
    used = {IAM_ACTION[c] for c in aws_calls.calls}
    assert used == policy_actions(deployment, INGEST)


def test_the_httppms_policy_allows_exactly_what_httppms_calls(deployment: Deployment, aws_calls: CallCounter) -> None:
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    from pms_connector import api

    deployment.invoke(INGEST, ingest_event("demo-hotel", [wake(1)]))
    # A fresh container for httppms: its own config reads (the in-process cache is shared with ingest).
    for provider in DEFAULT_PROVIDERS.values():
        provider.clear_cache()
    api.directory.cache_clear()
    api.httppms_dependencies.cache_clear()
    aws_calls.reset()
    for body in ({"action": "GET_REQUEST"}, {"action": "POST", "room": "101", "post_type": "M", "article": "WA",
                                            "units": 1, "amount": 1}):
        deployment.invoke(HTTPPMS, httppms_event(signed({**body, "property": "demo-hotel"})))
    used = {IAM_ACTION[c] for c in aws_calls.calls}
    assert used == policy_actions(deployment, HTTPPMS)
