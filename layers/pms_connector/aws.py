"""boto3 clients, created once per container and shared by the adapters.

Endpoints come from the standard AWS_ENDPOINT_URL* variables, which is how the local runner and the tests
point everything at moto's server.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_scheduler import EventBridgeSchedulerClient as SchedulerClient
    from mypy_boto3_sns import SNSClient

# Short timeouts: an HTTP request waiting on AWS should fail fast and answer "retry" (HTTPPMS 1xx).
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=2,
    read_timeout=5,
    tcp_keepalive=True,
)


@lru_cache(maxsize=1)
def dynamodb() -> DynamoDBClient:
    client: DynamoDBClient = boto3.session.Session().client("dynamodb", config=CLIENT_CONFIG)
    return client


@lru_cache(maxsize=1)
def events() -> EventBridgeClient:
    client: EventBridgeClient = boto3.session.Session().client("events", config=CLIENT_CONFIG)
    return client


@lru_cache(maxsize=1)
def scheduler() -> SchedulerClient:
    client: SchedulerClient = boto3.session.Session().client("scheduler", config=CLIENT_CONFIG)
    return client


@lru_cache(maxsize=1)
def sns() -> SNSClient:
    client: SNSClient = boto3.session.Session().client("sns", config=CLIENT_CONFIG)
    return client
