"""Logger and metrics, created once; every other module imports them from here.

Service name, namespace and log level come from the POWERTOOLS_* environment variables of template.yaml.
Guest personal data and secrets are never passed to the logger: log ids, counts and codes only.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

logger = Logger(service="pms-connector")
metrics = Metrics(namespace="PmsConnector", service="pms-connector")
