"""Deployment recipes stay in step with the CLI: every command they run exists and parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import cli

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _parses(argv: list[str]) -> None:
    result = CliRunner().invoke(cli.main, [*argv, "--help"])
    assert result.exit_code == 0, f"mim {' '.join(argv)}: {result.output}"


def _mim_args(command: str) -> list[str]:
    words = shlex.split(command)
    index = next(i for i, w in enumerate(words) if w.endswith("/mim") or w == "mim")
    args = words[index + 1:]
    return [a for a in args if not a.startswith(">")][: args.index(">>") if ">>" in args else None]


def test_kubernetes_cronjob_forbids_concurrent_runs_and_runs_a_real_command() -> None:
    spec = yaml.safe_load((DEPLOY / "cronjob.yaml").read_text())
    assert spec["kind"] == "CronJob"
    assert spec["spec"]["concurrencyPolicy"] == "Forbid"
    container = spec["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    _parses(container["args"])
    env = {e["name"]: e for e in container["env"]}
    assert "valueFrom" in env["MIM_SERVICENOW_PASSWORD"], "the password must come from a Secret"


@pytest.mark.parametrize("unit", ["mim.service", "mim-run.service"])
def test_systemd_units_run_real_commands(unit: str) -> None:
    text = (DEPLOY / unit).read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", text, re.M)
    assert exec_start
    _parses(_mim_args(exec_start.group(1)))
    assert "EnvironmentFile=" in text and "PASSWORD" not in exec_start.group(1)


def test_timer_triggers_the_oneshot_service() -> None:
    assert "OnUnitInactiveSec=" in (DEPLOY / "mim.timer").read_text()
    assert "Type=oneshot" in (DEPLOY / "mim.service").read_text()


def test_crontab_line_runs_sync_once() -> None:
    line = next(l for l in (DEPLOY / "crontab").read_text().splitlines() if l and not l.startswith("#"))
    command = line.split(None, 6)[6]
    mim_part = command[command.index("/usr/local/bin/mim"):].split(">>")[0]
    _parses(_mim_args(mim_part))


def test_container_image_copies_what_the_package_needs() -> None:
    root = DEPLOY.parent
    for line in (DEPLOY / "Containerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (root / source).exists(), source
    assert 'ENTRYPOINT ["mim"]' in (DEPLOY / "Containerfile").read_text()


# -- Kubernetes (kustomize), Prometheus rules, Grafana dashboard ---------------------------------------------

KUBE = DEPLOY / "kubernetes"


def _kustomization(folder: Path) -> dict:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def _resources(folder: Path) -> list[dict]:
    """The objects a kustomization lists, following bases (no kustomize binary needed for what is checked)."""
    out = []
    for entry in _kustomization(folder).get("resources", []):
        target = (folder / entry).resolve()
        assert target.exists(), f"{folder}: resource {entry} does not exist"
        out += _resources(target) if target.is_dir() else list(yaml.safe_load_all(target.read_text()))
    return out


def _container(obj: dict) -> dict:
    spec = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]["template"]["spec"]
    return spec["containers"][0]


def test_the_deployment_is_an_active_passive_pair_with_probes_on_the_port_it_serves() -> None:
    objects = {o["kind"]: o for o in _resources(KUBE / "base")}
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    container = _container(deployment)
    _parses(container["args"])
    args = container["args"]
    port = int(args[args.index("--metrics-port") + 1])
    assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in container["ports"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    env = {e["name"]: e for e in container["env"]}
    assert env["MIM_STATE"]["valueFrom"]["secretKeyRef"] == {"name": "mim-secrets", "key": "state-url"}
    assert all("valueFrom" in env[name] for name in ("MIM_SERVICENOW_PASSWORD", "MIM_JIRA_TOKEN"))
    assert objects["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60, "a cycle finishes its writes"


def test_the_cronjob_variant_forbids_concurrent_runs_on_a_postgresql_state() -> None:
    (cronjob,) = _resources(KUBE / "cronjob")
    assert cronjob["kind"] == "CronJob" and cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    container = _container(cronjob)
    _parses(container["args"])
    assert container["args"][:2] == ["sync", "--once"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MIM_STATE"]["valueFrom"]["secretKeyRef"]["key"] == "state-url"
    assert "volumes" not in cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"] or all(
        "persistentVolumeClaim" not in v for v in cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"])


@pytest.mark.parametrize("tenant", sorted(p.name for p in (KUBE / "overlays").iterdir()))
def test_each_tenant_overlay_has_its_namespace_platform_and_a_base(tenant: str) -> None:
    folder = KUBE / "overlays" / tenant
    kustomization = _kustomization(folder)
    assert kustomization["namespace"] == f"mim-{tenant}"
    objects = _resources(folder)
    assert {o["kind"] for o in objects} & {"Deployment", "CronJob"}
    (config,) = [g for g in kustomization["configMapGenerator"] if g["name"] == "mim-config"]
    literals = dict(item.split("=", 1) for item in config["literals"])
    platform = literals["MIM_PLATFORM"]
    assert platform in ("servicenow", "jira") and f"MIM_{platform.upper()}_URL" in literals
    assert not any(k.endswith(("PASSWORD", "TOKEN", "STATE")) for k in literals), "secrets stay in the Secret"
    for obj in objects:
        envfrom = _container(obj).get("envFrom", []) if obj["kind"] in ("Deployment", "CronJob") else []
        assert not envfrom or {"configMapRef": {"name": "mim-config"}} in envfrom


def _metric_names(text: str) -> set[str]:
    return set(re.findall(r"\b(mim_[a-z_]+)\b", text))


def _served_names() -> set[str]:
    """Every series name `mim run --metrics-port` serves after one real cycle against the simulator."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    from connector.core.settings import load_settings
    from connector.job.assembly import open_job
    from connector.job.cycle import run_cycle
    from connector.job.metrics import Metrics, serve
    from tests.shipped import servicenow_sim

    sim = servicenow_sim(user="dep", password="dep-secret-pw")
    server = sim.server().start()
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(env={"MIM_PLATFORM": "servicenow", "MIM_SERVICENOW_URL": server.url,
                                      "MIM_SERVICENOW_USERNAME": "dep", "MIM_SERVICENOW_PASSWORD": "dep-secret-pw",
                                      "MIM_STATE": str(Path(folder) / "state.sqlite"),
                                      "MIM_RULES": str(DEPLOY.parent / "rules"),
                                      "MIM_MAPPINGS": str(DEPLOY.parent / "mappings")})
        job = open_job(settings, lock=False)
        metrics = Metrics("servicenow", "sqlite", 60)
        metrics.attach(job)
        endpoint = serve(metrics, 0, "127.0.0.1")
        try:
            from datetime import datetime, timezone

            metrics.became_active(None)
            metrics.cycle_done(run_cycle(job.platform, job.store, job.rules, job.process, datetime.now(timezone.utc)))
            text = requests.get(f"http://127.0.0.1:{endpoint.port}/metrics", timeout=5).text
        finally:
            endpoint.stop()
            job.close()
            server.stop()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.fixture(scope="module")
def served() -> set[str]:
    return _served_names()


def test_every_metric_an_alert_rule_names_is_served(served: set[str]) -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "mim-alerts.yml").read_text())
    alerts = {r["alert"]: r for group in rules["groups"] for r in group["rules"]}
    assert {"MimNoSuccessfulCycle", "MimWriteFailures", "MimLockLost"} <= set(alerts)
    assert "3 * max by" in alerts["MimNoSuccessfulCycle"]["expr"] and "mim_interval_seconds" in alerts["MimNoSuccessfulCycle"]["expr"]
    for name, rule in alerts.items():
        names = _metric_names(rule["expr"])
        assert names and names <= served, f"{name} uses metrics that are not served: {names - served}"
        assert rule["labels"]["severity"] in ("page", "ticket") and rule["annotations"]["summary"]


def test_every_metric_the_dashboard_names_is_served(served: set[str]) -> None:
    import json

    dashboard = json.loads((DEPLOY / "grafana" / "mim-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    names = set().union(*(_metric_names(e) for e in exprs)) | _metric_names(json.dumps(dashboard["templating"]))
    assert len(names) >= 12, "the dashboard shows every kind of metric"
    assert names <= served, f"the dashboard uses metrics that are not served: {names - served}"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
