"""``mim`` commands run as a user whom file modes bind, also when the tests run as root (as CI runs them).

Root reads, writes and lists files whatever their mode: the capabilities ``CAP_DAC_OVERRIDE`` and
``CAP_DAC_READ_SEARCH`` let it. :func:`run_cli` runs the commands in a child process; as root, the child first
gives both up for good: drops them from its bounding set (``prctl(PR_CAPBSET_DROP)``), so that the ``exec`` of
the interpreter cannot grant them again, and from its effective, permitted and inheritable sets (``capset``),
so that no inheritable copy brings them back. Not root, the child is an ordinary process. Where they cannot be
dropped (no Linux, no ``CAP_SETPCAP``, a seccomp profile refusing ``prctl``), :func:`file_modes_ignored` says
why, for the test's skip. Shared by ``tests/test_state_errors.py`` and ``tests/test_environment_errors.py``.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2
_OVERRIDES = (1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def as_root() -> bool:
    """Whether this process runs as root (file modes do not bind it)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def drop_file_override() -> None:
    """Give up ``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH`` for this process and whatever it executes (a
    ``preexec_fn``); :class:`OSError` when the kernel refuses."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()  # version 3: capabilities 0-31, then 32-63; both of ours are in the first
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    for field in ("effective", "permitted", "inheritable"):
        setattr(data[0], field, getattr(data[0], field) & ~_OVERRIDES)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


@functools.cache
def file_modes_ignored() -> str | None:
    """Why a child of :func:`run_cli` would still read what its mode forbids (the reason for a skip), or None
    when file modes bind it. Probed once: the child must fail to read a file of mode 000."""
    if not as_root():
        return None
    if not sys.platform.startswith("linux"):
        return f"running as root on {sys.platform}: no way to drop the capability to override file modes"
    with tempfile.TemporaryDirectory(prefix="mim-caps-") as folder:
        probe = Path(folder) / "probe"
        probe.write_text("x")
        probe.chmod(0)
        try:
            done = subprocess.run([sys.executable, "-c", f"open({str(probe)!r}).read()"],
                                  preexec_fn=drop_file_override, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"running as root, and prctl or capset refused to drop CAP_DAC_OVERRIDE here ({exc})"
    if done.returncode == 0:
        return "running as root and the capabilities dropped still let root read a file of mode 000"
    if "PermissionError" not in done.stderr:
        return f"running as root; the capability probe failed otherwise: {done.stderr.strip()[-200:]}"
    return None


@dataclass(frozen=True)
class CliResult:
    """What one ``mim`` command did in the child: its exit code, and what it wrote (``output`` as a terminal
    shows both streams; a traceback is appended to it when the command raised)."""

    code: int
    stdout: str
    stderr: str
    output: str


_RUN_IN_ONE_PROCESS = """
import json, sys
from click.testing import CliRunner
import cli
out = {}
for name, argv in json.loads(sys.argv[1]).items():
    result = CliRunner().invoke(cli.main, argv)
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    out[name] = {"code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr,
                 "output": result.output + ("Traceback: " + repr(result.exception) if crashed else "")}
print(json.dumps(out))
"""
"""Every command in one process (one interpreter start, not one per command)."""


def run_cli(commands: dict[str, list[str]], env: dict[str, str], cwd: Path) -> dict[str, CliResult]:
    """Run each ``mim`` command (name -> arguments) in one child process in ``cwd`` with exactly ``env`` (plus this
    checkout on ``PYTHONPATH``), as a user whom file modes bind: as root, without the capabilities to override
    them (check :func:`file_modes_ignored` first)."""
    done = subprocess.run([sys.executable, "-c", _RUN_IN_ONE_PROCESS, json.dumps(commands)], cwd=cwd,
                          env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          preexec_fn=drop_file_override if as_root() else None, timeout=120)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: CliResult(**result) for name, result in results.items()}


__all__ = ["CliResult", "as_root", "drop_file_override", "file_modes_ignored", "run_cli"]
