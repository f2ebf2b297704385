"""Reading the numbers of a ``mim report`` page back, to hold them to the report's JSON: every element with a
``data-json`` path, its raw ``data-value`` and the text a person reads (``1h 05m``, ``2.29M``, ``5,377,500 USD``,
``33%``), parsed back on its own terms rather than formatted again with the report's code."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

TEXT_TAGS = frozenset({"text", "td", "dd", "span"})
"""Elements whose text is the number itself (a bar or a point has only its value and a tooltip)."""


class Numbers(HTMLParser):
    """Every ``data-json`` element of a page: ``(tag, path, data-value, text)``."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str, str]] = []
        self._open: list[list[Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        data = {k: v or "" for k, v in attrs}
        if "data-json" in data:
            self._open.append([tag, data["data-json"], data.get("data-value", ""), "", 0])
        elif self._open:
            self._open[-1][4] += 1  # a nested element (a <title> in a <rect>): its text is not the number

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1][4] == 0:
            self._open[-1][3] += data

    def handle_endtag(self, tag: str) -> None:
        if not self._open:
            return
        current = self._open[-1]
        if current[4]:
            current[4] -= 1
            return
        if tag == current[0]:
            self._open.pop()
            self.found.append((current[0], current[1], current[2], current[3].strip()))


def numbers_of(html: str) -> list[tuple[str, str, str, str]]:
    """The ``(tag, path, data-value, text)`` of every number on the page."""
    parser = Numbers()
    parser.feed(html)
    return parser.found


def at_path(data: Any, path: str) -> Any:
    """The value of the JSON at a dotted path (``overview.months.2.major_incidents``)."""
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def read_duration(text: str) -> tuple[float, float]:
    """``1h 05m`` -> (3900, 60): the seconds and how precise the text is."""
    parts = re.findall(r"(\d+)([dhms])", text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"not a duration: {text!r}")
    return float(sum(int(n) * _UNITS[u] for n, u in parts)), float(_UNITS[parts[-1][1]])


def read_amount(text: str) -> tuple[float, float]:
    """``5,377,500 USD`` -> (5377500, 1); ``2.98M`` -> (2980000, 5000): the amount and how precise it is."""
    text = text.split()[0] if " " in text else text
    match = re.fullmatch(r"(-?[\d,]+(?:\.\d+)?)([kMB]?)", text)
    if match is None:
        raise ValueError(f"not an amount: {text!r}")
    number, unit = match.groups()
    scale = {"": 1, "k": 1e3, "M": 1e6, "B": 1e9}[unit]
    decimals = len(number.split(".")[1]) if "." in number else 0
    return float(number.replace(",", "")) * scale, 10 ** -decimals * scale / 2 + (0.5 if not unit else 0)


def check_number(path: str, raw: str, text: str | None, expected: Any) -> str | None:
    """What is wrong with one number on the page against the JSON's ``expected`` (None: nothing)."""
    if expected is None:
        if raw != "" or (text is not None and text not in ("-", "")):
            return f"{path}: the JSON has no value, the page shows {raw!r} / {text!r}"
        return None
    if raw == "" or abs(float(raw) - float(expected)) > 1e-6 * max(1.0, abs(float(expected))):
        return f"{path}: data-value {raw!r} but the JSON says {expected!r}"
    if text is None:
        return None
    key = path.rsplit(".", 1)[-1]
    try:
        if key.endswith("_s"):
            value, precision = read_duration(text)
        elif key == "precision":
            value, precision = float(text.rstrip("%")) / 100, 0.005
        else:
            value, precision = read_amount(text)
    except ValueError as exc:
        return f"{path}: {exc}"
    if abs(value - float(expected)) > precision + 1e-9:
        return f"{path}: the page reads {text!r} ({value}) but the JSON says {expected!r}"
    return None


def mismatches(html: str, data: Any) -> tuple[list[str], int]:
    """Every number of the page that differs from the JSON, and how many numbers were checked."""
    found = numbers_of(html)
    problems = []
    for tag, path, raw, text in found:
        problems.append(check_number(path, raw, text if tag in TEXT_TAGS else None, at_path(data, path)))
    return [p for p in problems if p], len(found)


__all__ = ["numbers_of", "at_path", "read_duration", "read_amount", "check_number", "mismatches", "TEXT_TAGS"]
