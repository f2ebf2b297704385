"""``mim``: the command line of the major incident connector.

Commands parse options and call the library; exit codes (:mod:`connector.core.exits`) mean 0 ok, 1 findings or
failure, 2 usage, 3 a problem with the environment (state, lock, CA bundle...), reported with its fix.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from connector.core.exits import OperationalError, file_problem
from connector.core.text import one_line

if TYPE_CHECKING:
    from connector.core.settings import Settings


class _Group(click.Group):
    """The ``mim`` command group: an :class:`OperationalError` from any command is one message with its fix
    on stderr and its documented exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OperationalError as exc:
            self._environment(ctx, exc)
        except OSError as exc:
            if exc.filename is None:  # not about a file or folder (a socket): not ours to explain
                raise
            self._environment(ctx, file_problem(exc))

    @staticmethod
    def _environment(ctx: click.Context, exc: OperationalError) -> None:
        click.echo(f"Error: {exc.problem}", err=True)
        click.echo(f"Fix: {exc.fix}", err=True)
        ctx.exit(exc.exit_code)


def _settings(ctx: click.Context) -> "Settings":
    # imported here, not at the top: `mim --help` and `mim demo` need no settings (nor pydantic)
    from connector.core.settings import SettingsError, load_settings

    try:
        return load_settings(ctx.obj.get("config") if ctx.obj else None)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="TOML configuration file (default: $MIM_CONFIG, else ./mim.toml if present).")
@click.version_option("0.1.0", prog_name="mim")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """Major incident connector for ServiceNow and Jira Service Management."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@main.group()
def rules() -> None:
    """Validate and test rule, process and mapping files."""


@rules.command("check")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.pass_context
def rules_check(ctx: click.Context, paths: tuple[Path, ...]) -> None:
    """Validate rule, process, mapping and rule-test files (default: the configured rules and mappings, else
    ./rules and ./mappings when they exist, else the shipped ones).

    Prints one `file:line:col: message` line per error, all files at once (the files it read on stderr); exit 1
    on any error.
    """
    from connector.tools.checks import check_paths, describe_files

    settings = _settings(ctx)
    targets = list(paths) or [settings.rules_path(), settings.mappings_path()]
    errors, counts, read = check_paths(targets, settings.platform, settings.mappings_path())
    for error in errors:
        click.echo(str(error))
    click.echo(describe_files(read), err=True)
    summary = ", ".join(f"{n} {k} file{'s' if n != 1 else ''}" for k, n in counts.items() if n)
    if errors:
        click.echo(f"{len(errors)} error{'s' if len(errors) != 1 else ''} in {summary or 'no files'}", err=True)
        sys.exit(1)
    click.echo(f"ok: {summary or 'no files'}")


@rules.command("test")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--rules", "rules_dir", type=click.Path(path_type=Path), default=None,
              help="Rules to test (default: the configured rules).")
@click.pass_context
def rules_test(ctx: click.Context, paths: tuple[Path, ...], rules_dir: Path | None) -> None:
    """Run rule test cases (default: <rules>/tests/*.yaml); exit 1 on a failing case, with a diff."""
    from connector.detection.rules import load_rules
    from connector.tools.ruletest import run_tests

    settings = _settings(ctx)
    rules_path = rules_dir or settings.rules_path()
    ruleset = load_rules([rules_path])
    if ruleset.errors:
        for error in ruleset.errors:
            click.echo(str(error))
        raise click.ClickException("the rules do not load; fix them first (mim rules check)")
    targets = list(paths) or [rules_path if rules_path.is_dir() else rules_path.parent]
    results, errors = run_tests(targets, ruleset.rules)
    for error in errors:
        click.echo(str(error))
    failed = [r for r in results if not r.passed]
    for result in results:
        click.echo(f"{'PASS' if result.passed else 'FAIL'} {result.file}: {result.name}")
        for line in result.diff:
            click.echo(f"    {line}")
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed or errors or not results:
        if not results and not errors:
            click.echo("no test cases found", err=True)
        sys.exit(1)


@main.command()
@click.option("--tickets", "tickets_path", required=True, type=click.Path(path_type=Path),
              help="History: canonical JSONL, or a ServiceNow CSV/JSON or Jira JSON export (.zip/.gz ok).")
@click.option("--rules", "rules_dir", type=click.Path(path_type=Path), default=None, help="Rules directory or file.")
@click.option("--platform", type=click.Choice(["servicenow", "jira"]), default=None,
              help="Read the file as this platform's export through its mapping (default: by format).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--progress/--no-progress", default=None, help="Progress on stderr (default: on a terminal).")
@click.option("--score", "scored", is_flag=True,
              help="Score the replay against the history's own links (labels only: replayed as if unlinked).")
@click.option("--storm", default="10/60m", show_default=True,
              help="With --score: a labelled storm is COUNT tickets of one label within DURATION.")
@click.option("--label", default="parent", show_default=True,
              help="With --score: the field (or export column, e.g. problem_id) that links a ticket to its incident.")
@click.option("--from", "since", default=None, metavar="DATE",
              help="Replay from DATE (ISO, UTC unless it says otherwise); earlier tickets only teach the baselines.")
@click.option("--sweep", "sweep_spec", default=None, metavar="[RULE:]PARAM=V1,V2,...",
              help="With --score: replay once per value of a rule parameter, e.g. "
                   "ci-surge:surge.baseline.probability=1e-3,1e-4.")
@click.pass_context
def backtest(ctx: click.Context, tickets_path: Path, rules_dir: Path | None, platform: str | None,
             as_json: bool, progress: bool | None, scored: bool, storm: str, label: str, since: str | None,
             sweep_spec: str | None) -> None:
    """Replay history and report the major incidents the rules would have declared."""
    from connector.tools import prefetch

    prefetch.start(tickets_path)  # unzip while the imports below run
    from connector.core.mapping import load_mapping
    from connector.detection.rules import check_rules_against_mapping, load_rules
    from connector.tools.backtest import render_table, run_backtest
    from connector.tools.history import HistoryError

    settings = _settings(ctx)
    ruleset = load_rules([rules_dir or settings.rules_path()])
    if ruleset.errors:
        for error in ruleset.errors:
            click.echo(str(error), err=True)
        raise click.ClickException("the rules do not load; fix them first (mim rules check)")
    start = _parse_since(since)
    if sweep_spec is not None:
        scored = True
    show = sys.stderr.isatty() if progress is None else progress
    started = time.monotonic()

    def report(rows: int) -> None:
        if show:
            click.echo(f"\r  read {rows:,} rows ({time.monotonic() - started:.1f}s)", err=True, nl=False)

    def mapping_for(name: str) -> Any:
        mapping, errors = load_mapping(settings.mappings_path() / f"{name}.yaml")
        if mapping is None:
            raise click.ClickException("; ".join(str(e) for e in errors))
        unmapped = check_rules_against_mapping(ruleset, mapping)
        if unmapped:
            for error in unmapped:
                click.echo(str(error), err=True)
            raise click.ClickException(f"the rules use fields the {name} mapping does not provide")
        return mapping

    if scored:
        _scored_backtest(tickets_path, ruleset.rules, mapping_for, platform, report, storm, label, start, sweep_spec,
                         as_json, show)
        return
    try:
        result = run_backtest(tickets_path, ruleset.rules, mapping_for, platform, report, since=start)
    except HistoryError as exc:
        raise click.ClickException(str(exc)) from None
    if show:
        click.echo("", err=True)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=None))
    else:
        click.echo(render_table(result))
    if result.skipped:
        click.echo(f"{result.skipped} rows skipped; first: {result.skipped_examples[0]}", err=True)
    _exit_without_teardown()


def _exit_without_teardown() -> None:
    """End a process whose work is done and written without freeing its objects one by one (the tickets of a
    large history: a tenth of a second of a backtest). Only a real process: not under a test runner that
    captures the output (it would end the runner too), and nothing is left to clean up here."""
    import os

    out, err = sys.__stdout__, sys.__stderr__
    if out is not None and err is not None and sys.stdout is out and sys.stderr is err:
        out.flush()
        err.flush()
        os._exit(0)


def _parse_since(text: str | None) -> Any:
    """``--from``: an ISO date or time; a naive one is UTC."""
    if text is None:
        return None
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO date or time (e.g. 2013-11-01 or 2013-11-01T00:00+01:00)",
                                 param_hint="--from") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _scored_backtest(path: Path, rules: Any, mapping_for: Any, platform: str | None, report: Any, storm: str,
                     label: str, start: Any, sweep_spec: str | None, as_json: bool, show: bool) -> None:
    """``mim backtest --score`` (and ``--sweep``): replay as if nothing were linked, score against the links."""
    from connector.tools.backtest import read_labelled, render_table, replay
    from connector.tools.history import HistoryError
    from connector.tools.scoring import parse_storm, render_score, score_replay

    try:
        spec = parse_storm(storm)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--storm") from None
    sweep = None
    if sweep_spec is not None:
        from connector.tools.sweep import parse_sweep, variant

        try:
            sweep = parse_sweep(sweep_spec)
            for value in sweep.values:
                variant(rules, sweep, value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--sweep") from None
    try:
        labelled = read_labelled(path, rules, mapping_for, platform, report, label)
    except HistoryError as exc:
        raise click.ClickException(str(exc)) from None
    if show:
        click.echo("", err=True)
    tickets = sorted(labelled.tickets, key=lambda t: (t.opened_at, t.id))
    if not labelled.labels:
        click.echo(f"warning: no ticket carries a {label!r} label: there is nothing to score against", err=True)
    if sweep is not None:
        from connector.tools.sweep import render_sweep, run_sweep

        def step(index: int, value: Any) -> None:
            if show:
                click.echo(f"\r  replay {index + 1}/{len(sweep.values)}: {sweep.parameter}={value}", err=True, nl=False)

        points = run_sweep(tickets, labelled.labels, rules, sweep, spec, start, step)
        if show:
            click.echo("", err=True)
        if as_json:
            click.echo(json.dumps({"tickets": len(tickets), "skipped_rows": labelled.skipped.count,
                                   "sweep": {"rule": sweep.rule, "parameter": sweep.parameter,
                                             "results": [p.to_dict() for p in points]}}))
        else:
            click.echo(render_sweep(sweep, points))
        return
    result = replay(tickets, rules, presorted=True, since=start)
    result.skipped, result.skipped_examples = labelled.skipped.count, labelled.skipped.examples
    scored = score_replay(tickets, labelled.labels, result, spec, start)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "score": scored.to_dict()}))
    else:
        click.echo(render_table(result))
        click.echo("")
        click.echo(render_score(scored))
    if result.skipped:
        click.echo(f"{result.skipped} rows skipped; first: {result.skipped_examples[0]}", err=True)


def _describe_action(item: dict[str, Any]) -> str:
    kind = item["kind"]
    target = item.get("target_label") or item["target"]
    details = {
        "declare": lambda: f"mark {target} as major incident ({item.get('mode')}), marker {item.get('marker')}",
        "create_parent": lambda: f"create a new major incident ({item.get('mode')}): {item.get('fields', {}).get('title')}",
        "link": lambda: f"link {target} as child of {item.get('parent_label') or item.get('parent')}",
        "note": lambda: f"{'work note' if item.get('internal', True) else 'public comment'} on {target}: "
                        f"{str(item.get('text', '')).splitlines()[0][:90]}",
        "set_fields": lambda: f"set {', '.join(f'{k}={v}' for k, v in item.get('fields', {}).items())} on {target}",
        "set_stage": lambda: f"set stage {item.get('stage')} on {target}",
        "create_task": lambda: f"create review task on {target}: {item.get('title')} (due {item.get('due')})",
        "create_change": lambda: f"create change for {target}: {item.get('title')}",
        "resolve_child": lambda: f"resolve child {target}",
        "notify": lambda: f"notify {item.get('channel')}",
    }.get(kind, lambda: f"{kind} {target}")()
    reason = item.get("reason")
    # ticket values (titles, groups, services) are platform data: a line break must not split the line
    return one_line(f"{details}" + (f"  [why: rule {item.get('rule')}: {reason}]" if reason and item.get("rule") else
                                    f"  [why: {reason}]" if reason else ""))


def _print_report(report: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({**report.summary(), "declarations": report.declarations, "planned": report.planned,
                               "failures": report.failures, "skipped": report.skipped_records}, default=str))
        _print_untrusted(report)
        return
    verb = "would write" if report.dry_run else "planned"
    click.echo(f"{report.tickets_read} tickets read, {len(report.declarations)} major incidents declared, "
               f"{report.late_links} late links, {len(report.planned)} actions {verb}, {report.requests} requests"
               + ("" if report.dry_run else f", results {report.results or {}}"))
    for decl in report.declarations:
        group = ", ".join(f"{k}={v}" for k, v in decl["group"].items())
        click.echo(one_line(f"  declared {decl['parent_key'] or decl['parent']} by {decl['rule']} ({group}): "
                            f"{len(decl['children'])} children"))
    if report.dry_run:
        for item in report.planned:
            click.echo(f"  - {_describe_action(item)}")
    _print_untrusted(report)
    for line in report.failures:
        click.echo(f"  failed {line}", err=True)


def _print_untrusted(report: Any) -> None:
    """Platform records the cycle did not trust (malformed, or dated in the future), on stderr."""
    for line in report.skipped_records:
        click.echo(one_line(f"  skipped malformed record {line}"), err=True)
    for line in report.future_records:
        click.echo(one_line(f"  {line}"), err=True)
    for line in report.state_repairs:
        click.echo(one_line(f"  {line}"), err=True)


@main.command()
@click.option("--once", is_flag=True, required=True, help="Run one cycle and exit (use `mim run` for a loop).")
@click.option("--dry-run", is_flag=True, help="Print the plan (what would be written where, and why); write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the cycle report as JSON.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None, help="Log lines (stderr) as text or JSON.")
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the run's Prometheus metrics to FILE (node_exporter textfile collector; counters "
                   "continue from the previous file).")
@click.pass_context
def sync(ctx: click.Context, once: bool, dry_run: bool, as_json: bool, log_format: str | None,
         metrics_file: Path | None) -> None:
    """One poll-decide-apply cycle against the configured platform."""
    import logging
    from datetime import datetime, timezone

    from connector.core.settings import SettingsError
    from connector.job.cycle import run_cycle
    from connector.job.logs import setup_logging
    from connector.job.metrics import Metrics, store_kind
    from connector.job.statedb import StateError, state_exists
    from connector.platforms.errors import PlatformError

    settings = _settings(ctx)
    log = setup_logging(log_format or settings.log_format)
    _register_secrets(settings)
    scratch = None
    if dry_run:
        # a dry run writes nothing: not the platform, and not a state that does not exist yet
        import tempfile

        if not state_exists(settings.state):
            scratch = tempfile.TemporaryDirectory(prefix="mim-dry-run-")
            settings = settings.model_copy(update={"state": str(Path(scratch.name) / "state.sqlite")})
    metrics = None
    if metrics_file is not None and not dry_run:
        from connector.core.durations import parse_duration

        metrics = Metrics(settings.platform or "", store_kind(settings.state), parse_duration(settings.interval).total_seconds())
        metrics.load_textfile(metrics_file)
    job = None
    bar = _warm_up_bar()
    try:
        job = _open_job(settings, lock=not dry_run)
        if metrics is not None:
            metrics.attach(job)
            metrics.became_active(None)
        report = run_cycle(job.platform, job.store, job.rules, job.process, datetime.now(timezone.utc),
                           dry_run=dry_run, notifier=job.notifier, warm_up_progress=bar)
        if metrics is not None:
            metrics.cycle_done(report)
    except PlatformError as exc:
        if metrics is not None:
            metrics.cycle_failed("platform_error")
        raise click.ClickException(f"{settings.platform}: {exc}") from None
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    except StateError:
        if metrics is not None:
            metrics.cycle_failed("state_error")
        raise
    finally:
        if job is not None:
            if metrics is not None and job.policy is not None:
                metrics.count_retries(job.policy.retries)
            job.close()
        if metrics is not None and metrics_file is not None:
            metrics.write_textfile(metrics_file)
        if scratch is not None:
            scratch.cleanup()
    if bar is not None and report.baseline_warm_up:
        click.echo("", err=True)
    log.log(logging.INFO, "cycle done" if not dry_run else "dry run done", extra={"fields": report.summary()})
    _print_report(report, as_json)
    if report.failures:
        sys.exit(1)


@main.command()
@click.option("--interval", default=None, help="Time between cycles, with a unit (default: `interval` setting, 60s).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None, help="Log lines as text or JSON.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics at /metrics and a health check at /healthz on this port.")
@click.option("--metrics-bind", default="0.0.0.0", show_default=True,
              help="Address the metrics port listens on (127.0.0.1 to keep it local).")
@click.option("--max-cycles", type=int, default=None, hidden=True, help="Stop after N cycles (for tests).")
@click.pass_context
def run(ctx: click.Context, interval: str | None, log_format: str | None, metrics_port: int | None,
        metrics_bind: str, max_cycles: int | None) -> None:
    """The scheduled job: one cycle per interval until SIGTERM/SIGINT (exit 0), fatal errors exit 1.

    One runner per state: while another `mim run` holds the state's lock, this one waits as standby and takes
    over when the other stops or dies (active/passive pair)."""
    from connector.core.durations import parse_duration
    from connector.job.logs import setup_logging
    from connector.job.metrics import Metrics, serve, store_kind
    from connector.job.runner import StopFlag, run_loop

    settings = _settings(ctx)
    setup_logging(log_format or settings.log_format)
    _register_secrets(settings)
    try:
        every = parse_duration(interval or settings.interval)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--interval") from None
    job = _open_job(settings, lock=False)
    metrics = server = None
    try:
        if metrics_port is not None:
            metrics = Metrics(settings.platform or "", store_kind(settings.state), every.total_seconds())
            metrics.attach(job)
            try:
                server = serve(metrics, metrics_port, metrics_bind)
            except OSError as exc:
                raise OperationalError(f"cannot serve metrics on {metrics_bind}:{metrics_port}: {exc.strerror or exc}",
                                       "choose a free port with --metrics-port (or stop what listens there)") from None
        stop = StopFlag()
        stop.install()
        code = run_loop(job, every, stop, max_cycles=max_cycles, metrics=metrics)
    finally:
        if server is not None:
            server.stop()
        job.close()
    sys.exit(code)


def _warm_up_bar() -> Any:
    """A progress line on stderr for a baseline warm-up, when stderr is a terminal (else None)."""
    if not sys.stderr.isatty():
        return None
    started = time.monotonic()

    def show(read: int) -> None:
        click.echo(f"\r  baseline warm-up: {read:,} tickets of history read ({time.monotonic() - started:.1f}s)",
                   err=True, nl=False)

    return show


def _rules_and_state(ctx: click.Context) -> tuple["Settings", str, Any]:
    """The settings and the loaded rules of a command that reads an existing state (explain, baseline show):
    a clean error when no platform is configured, the rules do not load or there is no state yet."""
    from connector.detection.rules import load_rules
    from connector.job.statedb import redact, state_exists

    settings = _settings(ctx)
    if settings.platform is None:
        raise click.ClickException("no platform configured: set MIM_PLATFORM (servicenow or jira)")
    ruleset = load_rules([settings.rules_path()])
    if ruleset.errors:
        raise click.ClickException("the rules do not load; run mim rules check")
    if not state_exists(settings.state):
        raise click.ClickException(f"no state at {redact(settings.state)}: run mim sync --once first")
    return settings, settings.platform, ruleset


@main.group()
def baseline() -> None:
    """The per-group detection baselines: re-learn them from history, show what they learned."""


@baseline.command("learn")
@click.option("--weeks", type=click.IntRange(1, 104), default=4, show_default=True,
              help="Weeks of the platform's history to learn from.")
@click.option("--rule", "rule_ids", multiple=True, help="Only this rule (repeatable; default: every rule with a baseline).")
@click.pass_context
def baseline_learn(ctx: click.Context, weeks: int, rule_ids: tuple[str, ...]) -> None:
    """Forget what the baselines learned and learn them again from the platform's history."""
    from datetime import datetime, timedelta, timezone

    from connector.platforms.errors import PlatformError
    from connector.tools.baselines import relearn

    settings = _settings(ctx)
    _register_secrets(settings)
    job = _open_job(settings)
    bar = _warm_up_bar()
    try:
        result = relearn(job.platform, job.store, job.rules, datetime.now(timezone.utc), timedelta(weeks=weeks),
                         rule_ids, bar)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--rule") from None
    except PlatformError as exc:
        raise click.ClickException(f"{settings.platform}: {exc}") from None
    finally:
        job.close()
    if bar is not None:
        click.echo("", err=True)
    if not result.rules:
        click.echo("no surge rule has a baseline: nothing to learn")
        return
    click.echo(f"learned {', '.join(result.rules)} from {result.tickets:,} tickets opened since "
               f"{result.since:%Y-%m-%d %H:%M} UTC")
    for problem in result.skipped:
        click.echo(f"  skipped malformed record: {problem}", err=True)


@baseline.command("show")
@click.option("--rule", "rule_id", default=None, help="Only this rule.")
@click.option("--group", "group", default=None,
              help="Show this group's expected tickets per hour of the week (values comma-separated; needs --rule).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def baseline_show(ctx: click.Context, rule_id: str | None, group: str | None, as_json: bool) -> None:
    """What the baselines learned: span, groups, busiest groups, a group's week."""
    from connector.job.baselines import load_baselines
    from connector.job.store import StateStore
    from connector.tools.baselines import group_key, render_profile, render_summary, summarise

    settings, platform, ruleset = _rules_and_state(ctx)
    rules = [r for r in ruleset.rules if rule_id is None or r.id == rule_id]
    if rule_id is not None and not rules:
        raise click.BadParameter(f"no rule {rule_id!r}", param_hint="--rule")
    with StateStore(settings.state, platform) as store:
        baselines = load_baselines(store, rules, forget_stale=False)
    if group is not None:
        model = baselines.get(rule_id or "")
        if model is None or not rules[0].surge:
            raise click.BadParameter("--group needs --rule naming a surge rule with a baseline", param_hint="--group")
        try:
            key = group_key(model, group, len(rules[0].surge.group_by))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--group") from None
        if as_json:
            click.echo(json.dumps({"rule": model.rule, "group": group, "per_hour": model.hourly(key)}))
        else:
            click.echo("\n".join(render_profile(model, key)))
        return
    summaries = summarise(baselines)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in summaries]))
    else:
        click.echo(render_summary(summaries))


@main.command()
@click.argument("ticket")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def explain(ctx: click.Context, ticket: str, as_json: bool) -> None:
    """Why TICKET (id or key) was or was not declared or linked: rules, window counts, the ledger."""
    from datetime import datetime, timezone

    from connector.detection.engine import window_horizon
    from connector.job.baselines import load_baselines
    from connector.job.statedb import redact
    from connector.job.store import StateStore
    from connector.tools.explain import explain as explain_ticket

    settings, platform, ruleset = _rules_and_state(ctx)
    with StateStore(settings.state, platform) as store:
        found = store.find_ticket(ticket)
        if found is None:
            raise click.ClickException(f"{ticket} is not in the recent window of {redact(settings.state)} "
                                       "(only tickets of the last window + late-children period are kept)")
        now = datetime.now(timezone.utc)
        horizon = window_horizon(ruleset.rules)
        window = store.recent_tickets(found.opened_at - horizon)
        known = [r.to_engine() for r in store.major_incidents()]
        ledger = [row for row in store.ledger_rows() if row["target"] == found.id
                  or row["action"].get("parent") == found.id]
        baselines = load_baselines(store, ruleset.rules, forget_stale=False)
        result = explain_ticket(found, window, known, ruleset.rules, now, ledger, baselines)
    if as_json:
        click.echo(json.dumps({"ticket": found.canonical_dict(), "outcome": result.outcome,
                               "rules": [r.__dict__ for r in result.rules], "ledger": result.ledger}, default=str))
    else:
        click.echo("\n".join(result.lines()))


@main.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check configuration, connectivity, authentication, permissions and mapped fields; say what to fix."""
    from connector.job.doctor import render, run_doctor

    settings = _settings(ctx)
    checks = run_doctor(settings)
    click.echo(render(checks))
    if not all(c.ok for c in checks):
        sys.exit(1)


@main.command()
@click.option("--platform", "platform_name", type=click.Choice(["servicenow", "jira"]), default="servicenow",
              show_default=True, help="Which simulator to run the story on.")
@click.option("--keep", is_flag=True, help="Leave the simulator running afterwards (Ctrl-C to stop).")
def demo(platform_name: str, keep: bool) -> None:
    """The main job end to end on an embedded simulator with a built-in outage (no setup needed).

    The state is kept for `mim report`: at MIM_STATE if set (never a state the demo did not write), else in a
    new temporary directory; the last line names the command that renders its report.
    """
    import os

    from connector.tools.demo import report_command, run_demo

    state = os.environ.get("MIM_STATE") or None
    result = run_demo(platform_name, echo=click.echo, keep=keep, state=Path(state) if state else None)
    if result.major_incident is None:
        raise click.ClickException("the demo declared no major incident")
    click.echo(f"major incident declared with {len(result.children)} children; see the timeline above")
    if result.state is not None:
        click.echo(f"state kept in {result.state}; its report: {report_command(result.state)}")


def _open_job(settings: "Settings", lock: bool = True) -> Any:
    """The configured job, holding the runner lock; configuration problems become clean CLI errors."""
    from connector.core.settings import SettingsError
    from connector.core.yamlfile import ConfigFileError
    from connector.job.assembly import open_job

    try:
        return open_job(settings, lock=lock)  # a state problem (a damaged file, the lock held) is exit 3
    except ConfigFileError as exc:
        for error in exc.errors:
            click.echo(str(error), err=True)
        raise click.ClickException("configuration files have errors (see above)") from None
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _register_secrets(settings: "Settings") -> None:
    from connector.core.settings import SettingsError
    from connector.job.logs import register_secret

    secrets = [settings.servicenow.client_secret, *settings.webhooks.values()]
    for section in (settings.servicenow, settings.jira):
        try:
            secrets.append(section.secret())  # inline, or read from password_file/token_file
        except (SettingsError, OperationalError):
            pass  # reported by the adapter of the configured platform, which needs it
    for secret in secrets:
        if secret is not None:
            register_secret(secret.get_secret_value())
    from connector.job.statedb import url_password

    state_password = url_password(settings.state)  # a postgresql:// URL may carry one
    if state_password:
        register_secret(state_password)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a self-contained HTML page (overview charts, timelines and metrics) to FILE.")
@click.option("--since", default=None, metavar="WHEN",
              help="Only major incidents declared from this month, day or time on (2026-01, 2026-01-15, ISO time; UTC).")
@click.option("--until", default=None, metavar="WHEN",
              help="Only major incidents declared up to this month or day (inclusive) or before this time.")
@click.pass_context
def report(ctx: click.Context, as_json: bool, html_path: Path | None, since: str | None, until: str | None) -> None:
    """Major incidents of the state store with their stages and metrics, and the overview across them
    (per month, per service, per rule: table, --json, --html FILE). Reads the state alone: no platform
    settings needed."""
    from datetime import datetime, timezone

    from connector.job.statedb import state_exists
    from connector.process.processfile import load_process
    from connector.tools.overview import PeriodError, make_period
    from connector.tools.overview_page import render_text
    from connector.tools.report import collect, display_state, open_state, render_html, render_json, render_table

    settings = _settings(ctx)
    try:
        period = make_period(since, until)
    except PeriodError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from None
    if not state_exists(settings.state):
        raise click.ClickException(f"no state at {display_state(settings.state)}: run mim sync --once first, or set "
                                   "MIM_STATE to the state to read (mim demo names its own)")
    process, errors = load_process(settings.process_path())
    if process is None or errors:
        for error in errors:
            click.echo(str(error), err=True)
        raise click.ClickException("the process file has errors (see above)")
    now = datetime.now(timezone.utc)
    with open_state(settings.state, settings.platform) as store:
        platform = store.platform
        data = collect(store, process, now, period, state=settings.state)
    if html_path is not None:
        html_path.write_text(render_html(data, now), encoding="utf-8")
    count = len(data["major_incidents"])
    source = f"state {display_state(settings.state)} ({platform})"
    if as_json:
        click.echo(render_json(data))
    elif html_path is None:
        click.echo(f"{source}, {count} major incident{'s' if count != 1 else ''}")
        click.echo(render_text(data))
        click.echo("")
        click.echo(render_table(data))
    else:
        click.echo(f"{count} major incident{'s' if count != 1 else ''} from {source} written to {html_path}")


@main.group()
def state() -> None:
    """Manage the state store (SQLite file or PostgreSQL)."""


@state.command("copy")
@click.argument("source")
@click.argument("target")
@click.option("--replace", is_flag=True, help="Overwrite a target that already holds a state.")
def state_copy(source: str, target: str, replace: bool) -> None:
    """Copy the state at SOURCE into TARGET (each a SQLite file or a postgresql:// URL), every table and platform.

    Stop `mim run`/`mim sync` on both first (the copy holds both locks). The source is left as it was."""
    from connector.job.transfer import copy_state

    report = copy_state(source, target, replace=replace)
    for table, rows in sorted(report.rows.items()):
        click.echo(f"  {table}: {rows} rows")
    click.echo(f"copied {report.total} rows from {report.source} to {report.target}")


@main.command()
@click.argument("platform", type=click.Choice(["servicenow", "jira"]))
@click.option("--port", type=int, default=8080, show_default=True, help="Port on 127.0.0.1 (0 = any free port).")
@click.option("--user", default="admin", show_default=True, help="ServiceNow user name the simulator accepts.")
@click.option("--password", envvar="MIM_SIM_PASSWORD", default="admin", show_default=True,
              help="ServiceNow password the simulator accepts (a throwaway test credential; or MIM_SIM_PASSWORD).")
@click.option("--email", default="admin@example.com", show_default=True, help="Jira account email the simulator accepts.")
@click.option("--token", envvar="MIM_SIM_TOKEN", default="token", show_default=True,
              help="Jira API token the simulator accepts (a throwaway test credential; or MIM_SIM_TOKEN).")
@click.option("--flavour", type=click.Choice(["cloud", "dc"]), default="cloud", show_default=True, help="Jira flavour.")
@click.pass_context
def simulate(ctx: click.Context, platform: str, port: int, user: str, password: str, email: str, token: str,
             flavour: str) -> None:
    """Run a local simulator of the platform's API on 127.0.0.1 until interrupted."""
    if platform == "servicenow":
        from connector.sim.servicenow import serve as serve_sn

        # the people and groups of the process file exist on the simulated instance, so `mim sync` can assign
        people, groups = _process_directory(ctx)
        serve_sn(port, user, password, people=people, groups=groups)
    else:
        from connector.sim.jira import serve as serve_jira

        people, groups = _process_directory(ctx)
        serve_jira(port, email, token, flavour, people=people, groups=groups)


def _process_directory(ctx: click.Context) -> tuple[list[str], list[str]]:
    """The people and groups the configured process file names (so that a simulator knows them), or none when
    there is no readable process file."""
    from connector.core.settings import SettingsError, load_settings
    from connector.process.processfile import load_process

    try:
        process, _ = load_process(load_settings(ctx.obj.get("config") if ctx.obj else None).process_path())
    except (SettingsError, OSError):
        return [], []
    return (process.people(), process.groups()) if process is not None else ([], [])


if __name__ == "__main__":
    main()
