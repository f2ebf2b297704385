"""Everything a job run needs, loaded once: settings, rules, process, mapping, platform and state."""

from __future__ import annotations

from dataclasses import dataclass

from connector.core.mapping import Mapping, load_mapping
from connector.core.settings import Settings, SettingsError
from connector.core.yamlfile import ConfigFileError
from connector.detection.rules import Rule, check_rules_against_mapping, load_rules
from connector.job.store import StateStore
from connector.job.webhooks import WebhookNotifier
from connector.platforms import Platform, make_platform
from connector.platforms.retry import RetryPolicy
from connector.process.processfile import ProcessFile, load_process


@dataclass
class Job:
    """A configured connector: rules, process, mapping, platform adapter and state store."""

    settings: Settings
    rules: list[Rule]
    process: ProcessFile
    mapping: Mapping
    platform: Platform
    store: StateStore
    notifier: WebhookNotifier
    policy: RetryPolicy | None = None
    """The adapter's retry policy (its ``retries`` count feeds the metrics)."""

    def close(self) -> None:
        """Close the platform session and the state (releasing the runner lock)."""
        self.platform.close()
        self.store.close()


def load_config_files(settings: Settings) -> tuple[list[Rule], ProcessFile, Mapping]:
    """Rules, process and the platform's mapping; every error of every file at once as :class:`ConfigFileError`."""
    if settings.platform is None:
        raise SettingsError("no platform configured: set MIM_PLATFORM (servicenow or jira) or `platform` in mim.toml")
    ruleset = load_rules([settings.rules_path()])
    if settings.process_configured() and not settings.process_path().exists():
        raise SettingsError(f"process file {settings.process_path()} (MIM_PROCESS) does not exist")
    process, perrors = load_process(settings.process_path())
    mapping, merrors = load_mapping(settings.mappings_path() / f"{settings.platform}.yaml")
    errors = ruleset.errors + perrors + merrors
    if mapping is not None and not ruleset.errors:
        errors += check_rules_against_mapping(ruleset, mapping)
    if errors or process is None or mapping is None:
        raise ConfigFileError(errors)
    return ruleset.rules, process, mapping


def open_job(settings: Settings, lock: bool = True) -> Job:
    """Load everything and open the state (``settings.state``: a SQLite path or a ``postgresql://`` URL); with
    ``lock`` become the single runner (raises LockHeld, exit 3)."""
    rules, process, mapping = load_config_files(settings)
    policy = RetryPolicy()
    platform = make_platform(settings, mapping, policy)  # raises SettingsError when no platform is configured
    try:
        store = StateStore(settings.state, settings.platform or "", lock=lock)  # the lock before anything else
    except BaseException:
        platform.close()
        raise
    return Job(settings, rules, process, mapping, platform, store, WebhookNotifier(settings.webhooks), policy)
