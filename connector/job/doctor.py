"""``mim doctor``: check configuration, connectivity, authentication, permissions and mapped fields, and
say what to fix. Read-only: it never writes to the platform."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from connector.core.durations import format_duration
from connector.core.exits import OperationalError
from connector.core.settings import Settings, SettingsError
from connector.core.yamlfile import ConfigFileError
from connector.job.assembly import load_config_files
from connector.job.statedb import StateError, redact
from connector.job.store import StateStore
from connector.job.watermark import FUTURE_SKEW, future_on_platform
from connector.platforms import make_platform
from connector.platforms.base import ChecksProcessNeeds, Platform, ProcessNeeds, Watermark
from connector.platforms.errors import AuthenticationError, PermissionDenied, PlatformError


@dataclass
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str = ""
    fix: str = ""


def _guard(name: str, fn: Callable[[], str], fix_auth: str) -> Check:
    try:
        return Check(name, True, fn())
    except AuthenticationError as exc:
        return Check(name, False, str(exc), fix_auth)
    except PermissionDenied as exc:
        return Check(name, False, str(exc), "grant the integration user read/write access (see docs)")
    except PlatformError as exc:
        return Check(name, False, str(exc), "check the URL, the network path and the platform's status")


def run_doctor(settings: Settings, platform_factory: Callable[..., Platform] = make_platform) -> list[Check]:
    """Every check, in order; later checks are skipped when an earlier one makes them meaningless."""
    checks: list[Check] = []
    try:
        rules, process, mapping = load_config_files(settings)
        checks.append(Check("configuration files", True, f"{len(rules)} rules, process and {settings.platform} mapping valid"))
    except SettingsError as exc:
        return [Check("configuration", False, str(exc), "set MIM_PLATFORM and the platform's URL and credentials")]
    except ConfigFileError as exc:
        return [Check("configuration files", False, "; ".join(str(e) for e in exc.errors[:5]), "run mim rules check")]
    try:
        platform = platform_factory(settings, mapping)
    except SettingsError as exc:
        return checks + [Check("credentials", False, str(exc), "set them in the environment or a secret file")]
    except OperationalError as exc:  # a CA bundle or a secret file mim cannot use: the same fix as the job gives
        return checks + [Check("environment", False, exc.problem, exc.fix)]
    checks.append(_check_state(settings))
    auth_fix = ("check MIM_SERVICENOW_USERNAME/MIM_SERVICENOW_PASSWORD" if settings.platform == "servicenow"
                else "check MIM_JIRA_EMAIL/MIM_JIRA_TOKEN (Cloud: an API token; Data Center: a personal access token)")
    try:
        discovery: dict[str, object] = {}

        def discover() -> str:
            discovery.update(platform.discover(None))
            return f"{platform.base_url} answered; {platform.requests_sent} requests"

        checks.append(_guard("connectivity and authentication", discover, auth_fix))
        if not checks[-1].ok:
            return checks

        def read() -> str:
            now = datetime.now(timezone.utc)
            count = sum(1 for _ in platform.fetch_changed(Watermark(now, ""), now))
            return f"delta query works ({count} records changed in the last moments)"

        checks.append(_guard("read tickets", read, auth_fix))
        if checks[-1].ok:
            checks.append(_record_times(platform))
        for name, ok, detail, fix in platform.doctor_checks(discovery):
            checks.append(Check(name, ok, detail, fix))
        if isinstance(platform, ChecksProcessNeeds):
            needs = ProcessNeeds(people=tuple(process.people()), groups=tuple(process.groups()),
                                 accepts=any(rule.declare.mode == "accept" for rule in rules))
            for name, ok, detail, fix in platform.needs_checks(needs):
                checks.append(Check(name, ok, detail, fix))
    finally:
        platform.close()
    return checks


def _record_times(platform: Platform) -> Check:
    """Records dated beyond now + the skew: they never move the watermark, and are read again every cycle."""
    try:
        future = future_on_platform(platform, datetime.now(timezone.utc))
    except PlatformError as exc:
        return Check("record times", False, str(exc), "check the URL, the network path and the platform's status")
    if not future:
        return Check("record times", True, f"no record dated beyond now + {format_duration(FUTURE_SKEW)}")
    shown = "; ".join(str(f) for f in future[:5]) + (f"; and {len(future) - 5} more" if len(future) > 5 else "")
    return Check("record times", False,
                 f"{len(future)} record{'s' if len(future) != 1 else ''} dated beyond now + {format_duration(FUTURE_SKEW)}: {shown}",
                 "correct their update time on the platform (or its clock); until then mim reads them again every "
                 "cycle and does not let them move its watermark")


def _check_state(settings: Settings) -> Check:
    """The state store opens (and is upgraded), is writable, and who holds its runner lock. A problem gives the
    same message and fix as every other command (:class:`~connector.job.statedb.StateError`)."""
    try:
        with StateStore(settings.state, settings.platform or "unknown") as store:
            fresh = store.is_fresh()
            kind = "PostgreSQL" if store.is_postgresql else "SQLite"
            if store.try_lock():
                lock = "runner lock free (no job running)"
            else:
                lock = f"runner lock held by {store.lock_holder() or 'another mim process'} (a job is running)"
            detail = f"{store.description} ({kind}, schema {store.schema_version()}{', new' if fresh else ''}) is writable"
        return Check("state store", True, f"{detail}; {lock}")
    except StateError as exc:
        return Check("state store", False, exc.problem, exc.fix)
    except OSError as exc:  # the file system refused something the store does not foresee
        return Check("state store", False, f"{redact(settings.state)}: {exc}",
                     "point MIM_STATE at a writable location")


def render(checks: list[Check]) -> str:
    """The report as text."""
    lines = []
    for c in checks:
        lines.append(f"{'ok ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"     fix: {c.fix}")
    return "\n".join(lines)
