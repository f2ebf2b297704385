"""Safe templates: named values only, nothing reachable through a placeholder."""

from __future__ import annotations

from typing import Any

import pytest

from connector.core.templating import TemplateError, check, placeholders, render


class Spy:
    """A value that records every attribute lookup, to prove templates never introspect it."""

    def __init__(self) -> None:
        object.__setattr__(self, "touched", [])

    def __getattribute__(self, name: str) -> Any:
        if name != "touched":
            object.__getattribute__(self, "touched").append(name)
        return object.__getattribute__(self, name)

    def __str__(self) -> str:
        return "spy"


def test_renders_named_values() -> None:
    text = render(
        "P{priority} incident {number}: {title}",
        {"priority": 1, "number": "INC42", "title": "DB down"},
    )
    assert text == "P1 incident INC42: DB down"


def test_same_name_can_be_used_twice() -> None:
    assert render("{a}-{a}", {"a": "x"}) == "x-x"


def test_template_without_placeholders_is_unchanged() -> None:
    assert render("no placeholders here", {}) == "no placeholders here"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{literal}}", "{literal}"),
        ("{{{name}}}", "{value}"),
        ("a {{ b }} c", "a { b } c"),
        ('json: {{"k": "{name}"}}', 'json: {"k": "value"}'),
    ],
    ids=["escaped-braces", "escaped-around-placeholder", "escaped-with-spaces", "json-like"],
)
def test_double_braces_are_literal(template: str, expected: str) -> None:
    assert render(template, {"name": "value"}) == expected


def test_values_are_converted_with_str_only() -> None:
    assert render("{n} {none} {flag}", {"n": 3.5, "none": None, "flag": True}) == "3.5 None True"


def test_replacement_text_is_not_re_expanded() -> None:
    assert render("{a}", {"a": "{b}", "b": "secret"}) == "{b}"


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{incident.__class__}", "attribute access"),
        ("{incident.secret}", "attribute access"),
        ("{incident[0]}", "indexing"),
        ("{incident['key']}", "indexing"),
        ("{incident!r}", "conversions"),
        ("{incident!s}", "conversions"),
        ("{incident:10}", "format specs"),
        ("{incident:>10}", "format specs"),
        ("{incident.__init__.__globals__}", "attribute access"),
        ("{__class__}", "unknown name '__class__'"),
        ("{0}", "positional"),
        ("{}", "empty placeholder"),
    ],
    ids=[
        "dunder-class-attribute",
        "attribute",
        "index",
        "string-key-index",
        "repr-conversion",
        "str-conversion",
        "width-spec",
        "align-spec",
        "globals-escape",
        "bare-dunder-name",
        "positional",
        "empty",
    ],
)
def test_placeholder_cannot_reach_into_an_object(template: str, reason: str) -> None:
    spy = Spy()
    with pytest.raises(TemplateError, match=reason):
        render(f"Incident: {template}", {"incident": spy})
    assert object.__getattribute__(spy, "touched") == []


def test_bad_placeholder_anywhere_means_no_value_is_converted() -> None:
    spy = Spy()
    converted: list[str] = []

    class Loud:
        def __str__(self) -> str:
            converted.append("loud")
            return "loud"

    with pytest.raises(TemplateError):
        render("{loud} {incident.x}", {"loud": Loud(), "incident": spy})
    assert converted == []
    assert object.__getattribute__(spy, "touched") == []


def test_unknown_name_is_an_error_naming_placeholder_and_column() -> None:
    with pytest.raises(TemplateError) as caught:
        render("Hello {nmae}", {"name": "x"})
    error = caught.value
    assert error.placeholder == "{nmae}"
    assert error.column == 7
    assert str(error) == "placeholder '{nmae}' at column 7: unknown name 'nmae' (known names: name)"
    assert isinstance(error, ValueError)


def test_error_on_a_later_line_names_line_and_column() -> None:
    with pytest.raises(TemplateError, match=r"'\{a\.b\}' at line 2, column 3: attribute access"):
        render("first\nx {a.b}", {"a": 1})


@pytest.mark.parametrize(
    ("template", "placeholder", "column"),
    [
        ("abc { def", "{", 5),
        ("abc } def", "}", 5),
        ("{a{b}", "{", 1),
        ("trailing {", "{", 10),
    ],
    ids=["lone-open", "lone-close", "nested-open", "open-at-end"],
)
def test_unmatched_brace_is_an_error(template: str, placeholder: str, column: int) -> None:
    with pytest.raises(TemplateError, match="unmatched") as caught:
        render(template, {"a": 1, "b": 2})
    assert (caught.value.placeholder, caught.value.column) == (placeholder, column)


@pytest.mark.parametrize(
    "template",
    ["{ name }", "{na me}", "{1abc}", "{naïve}", "{a-b}"],
    ids=["padded", "inner-space", "leading-digit", "non-ascii", "dash"],
)
def test_only_identifier_characters_make_a_name(template: str) -> None:
    with pytest.raises(TemplateError, match="letters, digits and '_'"):
        render(template, {"name": 1, "na me": 1, "1abc": 1, "naïve": 1, "a-b": 1})


def test_check_accepts_a_good_template() -> None:
    assert check("P{priority}: {title} {{ok}}", ["priority", "title"]) == []


def test_check_reports_every_problem_in_order() -> None:
    problems = check("{title} {nope} {a.b} {c!r} {d:5} } {missing", {"title", "a", "c", "d"})
    assert problems == [
        "placeholder '{nope}' at column 9: unknown name 'nope' (known names: a, c, d, title)",
        "placeholder '{a.b}' at column 16: attribute access is not allowed",
        "placeholder '{c!r}' at column 22: conversions like !r are not allowed",
        "placeholder '{d:5}' at column 28: format specs are not allowed",
        "placeholder '}' at column 34: unmatched '}'; write '}}' for a literal brace",
        "placeholder '{' at column 36: unmatched '{'; write '{{' for a literal brace",
    ]


def test_check_accepts_any_iterable_of_names() -> None:
    assert check("{a}{b}", (name for name in "ab")) == []


def test_placeholders_lists_names_once_in_order() -> None:
    assert placeholders("{b} {a} {b} {x.y} {{c}}") == ["b", "a"]
