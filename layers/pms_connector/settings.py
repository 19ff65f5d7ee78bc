"""Deployment settings read once from the function's environment (template.yaml sets them)."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    table_name: str = Field(min_length=1)
    event_bus_name: str = Field(min_length=1)
    config_parameter_prefix: str = Field(min_length=1)
    config_secret_prefix: str = Field(min_length=1)
    config_cache_seconds: int = Field(300, ge=0, le=3600)
    # Secrets change rarely and each read is billed: kept longer than the config document.
    config_secret_cache_seconds: int = Field(900, ge=0, le=3600)


ENVIRONMENT = {
    "table_name": "TABLE_NAME",
    "event_bus_name": "EVENT_BUS_NAME",
    "config_parameter_prefix": "CONFIG_PARAMETER_PREFIX",
    "config_secret_prefix": "CONFIG_SECRET_PREFIX",
    "config_cache_seconds": "CONFIG_CACHE_SECONDS",
    "config_secret_cache_seconds": "CONFIG_SECRET_CACHE_SECONDS",
}
OPTIONAL = frozenset({"config_cache_seconds", "config_secret_cache_seconds"})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment; a missing variable fails with its name."""
    values = {field: os.environ[var] for field, var in ENVIRONMENT.items() if var in os.environ}
    missing = [var for field, var in ENVIRONMENT.items() if field not in values and field not in OPTIONAL]
    if missing:
        raise RuntimeError(f"missing environment variable(s): {', '.join(missing)}")
    return Settings.model_validate(values)
