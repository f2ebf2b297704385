"""Platform adapters (transport and syntax only) and the factory that builds one from settings."""

from __future__ import annotations

from connector.core.mapping import Mapping
from connector.core.settings import Settings, SettingsError, check_ca_bundle
from connector.platforms.base import ApplyResult, Platform, Watermark
from connector.platforms.retry import RetryPolicy


def make_platform(settings: Settings, mapping: Mapping, policy: RetryPolicy | None = None) -> Platform:
    """The adapter for ``settings.platform``, configured from its section; a clear error if unusable (a CA bundle
    that cannot be used is an :class:`~connector.core.exits.OperationalError`, before any request). ``policy`` is
    the retry policy to use (its ``retries`` count is read for metrics)."""
    if settings.platform in ("servicenow", "jira"):
        check_ca_bundle(getattr(settings, settings.platform).verify, f"{settings.platform}.verify "
                                                                       f"(MIM_{settings.platform.upper()}_VERIFY)")
    if settings.platform == "servicenow":
        from connector.platforms.servicenow import ServiceNowPlatform

        return ServiceNowPlatform.from_settings(settings.servicenow, mapping, policy=policy)
    if settings.platform == "jira":
        from connector.platforms.jira import JiraPlatform

        return JiraPlatform.from_settings(settings.jira, mapping, policy=policy)
    raise SettingsError("no platform configured: set MIM_PLATFORM (servicenow or jira) or `platform` in mim.toml")


__all__ = ["make_platform", "Platform", "ApplyResult", "Watermark"]
