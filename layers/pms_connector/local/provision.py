"""Create the template's resources and publish property configurations, on moto or on AWS.

The same code serves the local runner (against moto's server), the tests (under ``mock_aws``) and
``pms-connector config push`` (against a real account: SSM Parameter Store + Secrets Manager).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import boto3
from botocore.exceptions import ClientError

from pms_connector.config import PropertyConfig, split_secrets
from pms_connector.local.template import Template


def create_resources(template: Template, session: boto3.session.Session | None = None) -> dict[str, str]:
    """Create every table (with TTL), event bus, queue and schedule group of the template; returns logical
    id → name."""
    session = session or boto3.session.Session()
    dynamodb = session.client("dynamodb")
    events = session.client("events")
    names: dict[str, str] = {}
    for logical_id, args in template.table_definitions().items():
        try:
            dynamodb.create_table(**args)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise
        ttl = template.ttl_attribute(logical_id)
        if ttl:
            dynamodb.update_time_to_live(
                TableName=args["TableName"],
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl},
            )
        names[logical_id] = args["TableName"]
    for logical_id, name in template.event_buses().items():
        try:
            events.create_event_bus(Name=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                raise
        names[logical_id] = name
    sqs = session.client("sqs")
    for logical_id, name in template.queues().items():
        sqs.create_queue(QueueName=name)  # idempotent for the same attributes
        names[logical_id] = name
    scheduler = session.client("scheduler")
    for logical_id, name in template.schedule_groups().items():
        try:
            scheduler.create_schedule_group(Name=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConflictException":
                raise
        names[logical_id] = name
    return names


def push_properties(
    properties: Mapping[str, PropertyConfig],
    *,
    parameter_prefix: str,
    secret_prefix: str,
    session: boto3.session.Session | None = None,
    progress: Callable[[str], Any] = lambda _msg: None,
) -> None:
    """Write each property's document to SSM and its secrets to Secrets Manager (create or update)."""
    session = session or boto3.session.Session()
    ssm = session.client("ssm")
    secrets = session.client("secretsmanager")
    for index, (pid, config) in enumerate(sorted(properties.items()), start=1):
        public, secret = split_secrets(config)
        ssm.put_parameter(
            Name=f"{parameter_prefix.rstrip('/')}/{pid}",
            Value=json.dumps(public, ensure_ascii=False),
            Type="String",
            Overwrite=True,
        )
        secret_id = f"{secret_prefix.rstrip('/')}/{pid}"
        try:
            secrets.put_secret_value(SecretId=secret_id, SecretString=json.dumps(secret))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            secrets.create_secret(Name=secret_id, SecretString=json.dumps(secret))
        progress(f"[{index}/{len(properties)}] {pid}: config and secrets written")
