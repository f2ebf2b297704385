"""Exit codes of ``mim`` and the error type for problems with the environment the connector runs in.

| code | meaning |
|---|---|
| 0 | ok |
| 1 | findings or failure: rule errors, failing rule tests, an action that failed, authentication refused |
| 2 | usage: an unknown option or a missing argument |
| 3 | environment: the state store, its lock, a CA bundle, file permissions or a schema version stop the job;
|   | the message says what is wrong and how to fix it |
"""

from __future__ import annotations

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


__all__ = ["EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_ENVIRONMENT", "OperationalError"]
