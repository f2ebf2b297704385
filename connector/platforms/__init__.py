"""Platform adapters (transport and syntax only) and the factory that builds one from settings."""

from __future__ import annotations

from ..config import ConfigurationError, Settings
from ..mapping import Mapping
from .base import ApplyResult, Platform, Watermark


def make_platform(settings: Settings, mapping: Mapping) -> Platform:
    """The adapter for ``settings.platform``, configured from its section; a clear error if unusable."""
    if settings.platform == "servicenow":
        from .servicenow import ServiceNowPlatform

        return ServiceNowPlatform.from_settings(settings.servicenow, mapping)
    if settings.platform == "jira":
        from .jira import JiraPlatform

        return JiraPlatform.from_settings(settings.jira, mapping)
    raise ConfigurationError("no platform configured: set MIM_PLATFORM (servicenow or jira) or `platform` in mim.toml")


__all__ = ["make_platform", "Platform", "ApplyResult", "Watermark"]
