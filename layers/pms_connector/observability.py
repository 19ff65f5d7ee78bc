"""Logger, metrics and tracer, created once; every other module imports them from here.

Service name, namespace and log level come from the POWERTOOLS_* environment variables of template.yaml.
Guest personal data and secrets are never passed to the logger: log ids, counts and codes only (the test
suite scans everything it logs for the guest data and secrets it used: tests/leakscan.py).

Metrics: traffic counters carry only the ``service`` dimension (one metric for the whole deployment);
the ``property`` dimension is kept for what tells which hotel is in trouble (outbox backlog, parked
commands, UCM unreachable, wake-ups at risk or failed), emitted by ``metric_by`` only when there is
something to say, so an idle hotel costs no custom metric (metrics are billed by the hour they are sent).

Tracing: X-Ray through Powertools' Tracer, active only in Lambda. Each function patches what it calls:
botocore, and httpx where a UCM or PMS is called. Responses and errors are never captured: they can hold
guest data. The HTTP API functions run with ``PMS_CONNECTOR_TRACING=off`` unless the stack's ApiTracing
parameter is on: the X-Ray SDK (and wrapt, asyncio) costs ~0.2x of ``import boto3`` on their cold start,
which is on pmslink's request path, and tracing a 5-second poll costs more than the rest of a hotel's
traffic (bench/cost.py). Off, ``tracer`` is a stand-in that never imports the SDK.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics

logger = Logger(service="pms-connector")
metrics = Metrics(namespace="PmsConnector", service="pms-connector")


_F = TypeVar("_F", bound=Callable[..., Any])


class _Untraced:
    """What the code uses of Powertools' Tracer, doing nothing (PMS_CONNECTOR_TRACING=off). Also the type
    the code sees of the real one."""

    def capture_lambda_handler(self, *, capture_response: bool = True,
                               capture_error: bool = True) -> Callable[[_F], _F]:
        return lambda handler: handler

    def capture_method(self, *, capture_response: bool = True, capture_error: bool = True) -> Callable[[_F], _F]:
        return lambda method: method

    def put_annotation(self, key: str, value: str) -> None:
        return None

    def patch(self, modules: Sequence[str]) -> None:
        return None


def _tracer() -> _Untraced:
    if os.environ.get("PMS_CONNECTOR_TRACING", "on") == "off":
        return _Untraced()
    from aws_lambda_powertools import Tracer

    return cast(_Untraced, Tracer(service="pms-connector", auto_patch=False))


tracer = _tracer()


def trace_calls(modules: Sequence[str]) -> None:
    """X-Ray subsegments for every call made through these modules (a no-op outside Lambda)."""
    tracer.patch(modules)


def metric_by(name: str, value: float, unit: str = "Count", **dimensions: str) -> None:
    """One metric with its own dimensions (``property=...``, ``action=...``) besides ``service``, flushed at
    once as its own EMF blob, so the handler's other metrics keep theirs."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(name=name, unit=MetricUnit(unit), value=value, namespace=metrics.namespace,
                       default_dimensions={"service": "pms-connector"}) as metric:
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)
