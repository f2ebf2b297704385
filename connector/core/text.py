"""Text from the platform (or a history export) put on one line of the connector's own output.

A ticket's title, service or caller is data anyone who can open a ticket controls: a line break in it would
split a ``--dry-run`` line or a table row into what looks like two, and a terminal escape sequence would be
obeyed by the terminal. :func:`one_line` shows such characters escaped instead.
"""

from __future__ import annotations

import re

_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """``text`` with line breaks, tabs and other control characters escaped (``\\n``, ``\\x1b``...)."""
    return _BREAKING.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                               else f"\\u{ord(m.group()):04x}"), text)


__all__ = ["one_line"]
