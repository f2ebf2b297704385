"""Exit codes of ``mim`` and the error type for problems with the environment the connector runs in.

| code | meaning |
|---|---|
| 0 | ok |
| 1 | findings or failure: rule errors, failing rule tests, an action that failed, authentication refused |
| 2 | usage: an unknown option or a missing argument |
| 3 | environment: the state store, its lock, a CA bundle, file permissions (a file or folder mim cannot read or |
|   | write, a read-only file system, a full disk) or a schema version stop the job; the message says what is |
|   | wrong and how to fix it |
"""

from __future__ import annotations

import errno
import os

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3


class OperationalError(Exception):
    """A problem with the environment (state file, lock, CA bundle, permissions, schema version): one clear
    message with its fix, reported by the CLI without a traceback and with :attr:`exit_code`."""

    exit_code: int = EXIT_ENVIRONMENT

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} (fix: {fix})")


def file_problem(exc: OSError) -> OperationalError:
    """An :class:`OSError` about a file or folder (it names one: ``exc.filename``) as one message with its fix:
    permission denied, a read-only file system, a full disk, a path that does not exist."""
    path = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "the user running mim"
        return OperationalError(f"permission denied: {path}",
                                f"give the user running mim ({user}) access to {path} and its folder (chmod/chown), "
                                "or point the setting at a place it may use")
    if code == errno.EROFS:
        return OperationalError(f"{path} is on a read-only file system", "point the setting at a writable location")
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return OperationalError(f"no space left to write {path}", "free disk space (or raise the quota) where it lives")
    if code in (errno.ENOENT, errno.ENOTDIR):
        return OperationalError(f"{path} does not exist", "create it, or correct the path in the command or setting")
    if code == errno.EISDIR:
        return OperationalError(f"{path} is a folder, not a file", "give the path of a file")
    return OperationalError(f"{exc.strerror or exc.__class__.__name__}: {path}", "check the path and its permissions")


__all__ = ["EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_ENVIRONMENT", "OperationalError", "file_problem"]
