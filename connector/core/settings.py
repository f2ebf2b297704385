"""Configuration: a TOML file (``mim.toml``, ``--config`` or ``MIM_CONFIG``) plus environment variables
``MIM_<SECTION>_<KEY>`` (``MIM_PLATFORM``, ``MIM_SERVICENOW_URL``, ``MIM_JIRA_TOKEN``...), the
environment winning. Secrets come from the environment or a file (``password_file``/``token_file``), never
from the command line, and are held as :class:`pydantic.SecretStr` so they never print.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from connector.core.exits import OperationalError, file_problem

SECTIONS = ("servicenow", "jira", "webhooks")


class SettingsError(Exception):
    """The configuration is unusable; the message says what to fix (and never contains a secret)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("verify", mode="before", check_fields=False)
    @classmethod
    def _verify(cls, value: Any) -> Any:
        # an environment variable is a string: "false" must mean False, not a CA bundle named "false"
        if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
            return False
        return value

    @model_validator(mode="after")
    def _tls(self) -> "_Section":
        url = getattr(self, "url", None)
        verify = getattr(self, "verify", True)
        if url and verify is False and not is_loopback(url):
            raise ValueError("verify = false is only allowed for 127.0.0.1/localhost; give a CA bundle path instead")
        if url and urlsplit(url.strip()).scheme.lower() == "http" and not is_loopback(url):
            # basic auth and tokens would travel in clear text
            raise ValueError("plain http:// is only allowed for 127.0.0.1/localhost (a simulator); use https://")
        return self


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine: an IP address in 127.0.0.0/8 or ``::1``, or the name ``localhost``.
    The host is parsed, never matched by prefix: ``127.attacker.invalid`` is a name anyone can register."""
    try:
        host = urlsplit(url.strip() if "://" in url else f"//{url.strip()}").hostname
    except ValueError:  # an unparsable URL (a bad IPv6 literal) is not loopback
        return False
    if not host:
        return False
    if host == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_ca_bundle(verify: bool | str, where: str) -> None:
    """Raise :class:`OperationalError` (exit 3, with the fix) when the CA bundle TLS would use cannot be: the
    configured ``verify`` path (``where`` names the setting) or, with ``verify = true``, ``REQUESTS_CA_BUNDLE``
    / ``CURL_CA_BUNDLE``. Checked before the first request, where requests would raise a bare OSError."""
    if verify is False:
        return
    if verify is True:
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            if os.environ.get(name):
                _check_bundle(os.environ[name], f"the environment variable {name}", f"unset {name} or correct it")
        return
    _check_bundle(verify, where, f"set {where} to the path of a PEM file of CA certificates (or true for the system's)")


def _check_bundle(path: str, where: str, fix: str) -> None:
    import ssl  # (only where a CA bundle is configured: most commands never need it)

    bundle = Path(path).expanduser()
    if not bundle.exists():
        raise OperationalError(f"CA bundle {path} ({where}) does not exist", fix)
    try:
        if bundle.is_dir():
            ssl.create_default_context(capath=str(bundle))
        else:
            ssl.create_default_context(cafile=str(bundle))
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            raise OperationalError(f"CA bundle {path} ({where}) holds no readable certificate ({exc.reason})", fix) from None
        problem = file_problem(exc)
        raise OperationalError(f"CA bundle {path} ({where}): {problem.problem}", problem.fix) from None


def _read_secret_file(path: str | None, setting: str) -> SecretStr | None:
    if not path:
        return None
    try:
        return SecretStr(Path(path).read_text(encoding="utf-8").strip())
    except UnicodeDecodeError:
        raise SettingsError(f"secret file {path} ({setting}) is not UTF-8 text") from None
    except FileNotFoundError:
        raise SettingsError(f"cannot read secret file {path} ({setting}): it does not exist") from None
    except OSError as exc:  # it is there but mim may not read it: the environment, with its fix (exit 3)
        problem = file_problem(exc)
        raise OperationalError(f"cannot read secret file {path} ({setting}): {problem.problem}", problem.fix) from None


class ServiceNowSettings(_Section):
    """``[servicenow]``: instance URL and credentials (basic, or OAuth password grant with client id)."""

    url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    verify: bool | str = True
    timeout: float = 30.0

    def secret(self) -> SecretStr | None:
        """The password, from the setting or its file."""
        return self.password or _read_secret_file(self.password_file, "servicenow.password_file")


class JiraSettings(_Section):
    """``[jira]``: site URL, email + API token (Cloud) or a personal access token (Data Center)."""

    url: str | None = None
    email: str | None = None
    token: SecretStr | None = None
    token_file: str | None = None
    project: str = "ITSM"
    flavour: Literal["auto", "cloud", "dc"] = "auto"
    verify: bool | str = True
    timeout: float = 30.0

    def secret(self) -> SecretStr | None:
        """The API token, from the setting or its file."""
        return self.token or _read_secret_file(self.token_file, "jira.token_file")


class Settings(BaseModel):
    """Everything the job needs."""

    model_config = ConfigDict(extra="forbid")

    platform: Literal["servicenow", "jira"] | None = None
    rules: str | None = None
    mappings: str | None = None
    process: str | None = None
    state: str = "mim-state.sqlite"
    log_format: Literal["text", "json"] = "text"
    interval: str = "60s"
    servicenow: ServiceNowSettings = Field(default_factory=ServiceNowSettings)
    jira: JiraSettings = Field(default_factory=JiraSettings)
    webhooks: dict[str, SecretStr] = Field(default_factory=dict)

    @field_validator("platform", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    def rules_path(self) -> Path:
        """Directory (or file) of rule files: configured, else ``./rules`` when the current directory has one,
        else the shipped defaults."""
        return Path(self.rules) if self.rules else local_or_default("rules")

    def mappings_path(self) -> Path:
        """Directory of mapping files: configured, else ``./mappings`` when the current directory has one, else
        the shipped defaults."""
        return Path(self.mappings) if self.mappings else local_or_default("mappings")

    def process_configured(self) -> bool:
        """True when the process file was named explicitly (then it must exist)."""
        return self.process is not None

    def process_path(self) -> Path:
        """The process file: configured, else ``process.yaml`` beside the rules."""
        if self.process:
            return Path(self.process)
        rules = self.rules_path()
        return (rules if rules.is_dir() else rules.parent) / "process.yaml"


def local_or_default(name: str) -> Path:
    """``./<name>`` when the current directory has it (as ``./mim.toml`` is picked up), else :func:`default_dir`:
    the rules and mappings an operator is editing are the ones checked and run."""
    local = Path(name)
    return local if local.is_dir() else default_dir(name)


def default_dir(name: str) -> Path:
    """The shipped ``rules``/``mappings`` directory: in the source tree, or installed with the package
    (setup.cfg maps them to ``connector/defaults/<name>``)."""
    package = Path(__file__).resolve().parent.parent
    source = package.parent / name
    if source.is_dir() and (package.parent / "setup.cfg").is_file():
        return source
    return package / "defaults" / name


TOP_LEVEL = ("platform", "rules", "mappings", "process", "state", "log_format", "interval")


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in env.items():
        # MIM_SIM_* belong to `mim simulate`; other unknown MIM_* names are ignored rather than breaking
        # every command (a typo in a section key is still reported: sections forbid unknown keys)
        if not name.startswith("MIM_") or name == "MIM_CONFIG" or name.startswith("MIM_SIM_"):
            continue
        rest = name[4:].lower()
        for section in SECTIONS:
            if rest.startswith(section + "_"):
                out.setdefault(section, {})[rest[len(section) + 1:]] = value
                break
        else:
            if rest in TOP_LEVEL:
                out[rest] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(config: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the TOML file (explicit, ``MIM_CONFIG``, or ``./mim.toml`` if present) and the
    environment. Raises :class:`SettingsError` with a readable message."""
    env = os.environ if env is None else env
    path = Path(config) if config else Path(env["MIM_CONFIG"]) if env.get("MIM_CONFIG") else None
    data: dict[str, Any] = {}
    if path is None and Path("mim.toml").is_file():
        path = Path("mim.toml")
    if path is not None:
        import tomllib

        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"{path}: configuration file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{path}: invalid TOML: {exc}") from None
        except OSError as exc:  # not readable: permissions, a folder
            problem = file_problem(exc)
            raise OperationalError(f"configuration file {path}: {problem.problem}", problem.fix) from None
    data = _merge(data, _env_overrides(env))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"])
            env_name = "MIM_" + "_".join(str(p) for p in err["loc"]).upper()
            # never echo the offending input: it may be a secret
            problems.append(f"{where} (or {env_name}): {err['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
