"""Where property configurations come from: SSM Parameter Store + Secrets Manager on AWS, a dict in tests.

On AWS a property's document (without secrets) is the SSM parameter ``{CONFIG_PARAMETER_PREFIX}/{id}`` and
its secrets the secret ``{CONFIG_SECRET_PREFIX}/{id}``; Powertools' parameters utility caches the document for
``CONFIG_CACHE_SECONDS`` and the secret for ``CONFIG_SECRET_CACHE_SECONDS`` (longer: every GetSecretValue is
billed, from every warm container), so a warm container reads neither on a request. A property added by its
stack is live within that cache time; an unknown id is remembered for a minute so probing for property
names cannot drive SSM calls.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, Protocol

from botocore.exceptions import ClientError

from pms_connector.config import PROPERTY_ID_PATTERN, PropertyConfig, merge_secrets, parse_property
from pms_connector.errors import ConfigError, ConfigUnavailable
from pms_connector.observability import logger

_ID = re.compile(PROPERTY_ID_PATTERN)
NEGATIVE_CACHE_SECONDS = 60
_NOT_FOUND = frozenset({"ParameterNotFound", "ResourceNotFoundException"})


class PropertyDirectory(Protocol):
    def get(self, property_id: str) -> PropertyConfig | None:
        """The property's validated configuration, or None when there is no such property."""
        ...

    def gone(self, property_id: str) -> bool:
        """True only when the property does not exist any more (its config deleted), read fresh: an invalid
        or unreadable config is not gone. ConfigUnavailable when that cannot be told now."""
        ...


class StaticDirectory:
    """Properties held in memory (tests, one-off tools)."""

    def __init__(self, properties: Mapping[str, PropertyConfig]) -> None:
        self._properties = dict(properties)

    def get(self, property_id: str) -> PropertyConfig | None:
        return self._properties.get(property_id)

    def gone(self, property_id: str) -> bool:
        return property_id not in self._properties


class ParameterStoreDirectory:
    """Properties from SSM Parameter Store and Secrets Manager, cached with a TTL."""

    def __init__(self, parameter_prefix: str, secret_prefix: str, cache_seconds: int = 300, *,
                 secret_cache_seconds: int | None = None) -> None:
        self.parameter_prefix = parameter_prefix.rstrip("/")
        self.secret_prefix = secret_prefix.rstrip("/")
        self.cache_seconds = cache_seconds
        self.secret_cache_seconds = cache_seconds if secret_cache_seconds is None else secret_cache_seconds
        self._unknown: dict[str, float] = {}
        self._parsed: dict[str, tuple[Any, Any, PropertyConfig]] = {}

    def get(self, property_id: str) -> PropertyConfig | None:
        if not _ID.fullmatch(property_id):
            return None
        if self._unknown.get(property_id, 0) > time.monotonic():
            return None
        from aws_lambda_powertools.utilities import parameters

        try:
            document = parameters.get_parameter(
                f"{self.parameter_prefix}/{property_id}", transform="json", max_age=self.cache_seconds
            )
            secrets = parameters.get_secret(
                f"{self.secret_prefix}/{property_id}", transform="json", max_age=self.secret_cache_seconds
            )
        except (parameters.exceptions.GetParameterError, parameters.exceptions.TransformParameterError) as exc:
            # Powertools re-raises inside its except block: the boto3 error is the implicit context.
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ClientError) and cause.response["Error"]["Code"] in _NOT_FOUND:
                self._unknown[property_id] = time.monotonic() + NEGATIVE_CACHE_SECONDS
                return None
            logger.error("property configuration unreadable", extra={"property": property_id,
                                                                      "error": type(cause or exc).__name__})
            raise ConfigUnavailable("property configuration temporarily unavailable, retry later") from exc
        return self._validated(property_id, document, secrets)

    def gone(self, property_id: str) -> bool:
        from aws_lambda_powertools.utilities import parameters

        try:  # past every cache: a property re-created a moment ago is not gone
            parameters.get_parameter(f"{self.parameter_prefix}/{property_id}", force_fetch=True,
                                     max_age=self.cache_seconds)
        except parameters.exceptions.GetParameterError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ClientError) and cause.response["Error"]["Code"] in _NOT_FOUND:
                return True
            raise ConfigUnavailable("property configuration temporarily unavailable, retry later") from exc
        return False

    def polling_ids(self) -> list[str]:
        """Ids of the properties in polling mode (``pms_server`` set): one GetParametersByPath per cache TTL
        (10 properties a page), so the poller's rate rule finds them without a call per property."""
        from aws_lambda_powertools.utilities import parameters

        documents = parameters.get_parameters(self.parameter_prefix, transform="json", max_age=self.cache_seconds,
                                              raise_on_transform_error=False)
        return sorted(name.rsplit("/", 1)[-1] for name, doc in documents.items()
                      if isinstance(doc, Mapping) and doc.get("pms_server"))

    def _validated(self, property_id: str, document: Any, secrets: Any) -> PropertyConfig | None:
        # Powertools hands back the same cached objects until they expire: validate once per fetch. The
        # objects themselves are kept (not their ids), so a new fetch can never be mistaken for an old one.
        cached = self._parsed.get(property_id)
        if cached and cached[0] is document and cached[1] is secrets:
            return cached[2]
        if not isinstance(document, Mapping) or not isinstance(secrets, Mapping):
            logger.error("property configuration is not a JSON object", extra={"property": property_id})
            return None
        try:
            config = parse_property(merge_secrets(document, secrets))
        except ConfigError as exc:
            # Refused like an unknown property; the operator sees why in the log (no secret in the text).
            logger.error("invalid property configuration", extra={"property": property_id, "reason": str(exc)})
            return None
        if config.id != property_id:
            logger.error("property id does not match its parameter name", extra={"property": property_id})
            return None
        self._parsed[property_id] = (document, secrets, config)
        return config
