"""Action keys: one constructor per kind, one parser, and the written form of every kind exactly as the ledgers
and the platform markers of earlier versions hold it."""

from __future__ import annotations

import copy
import json

import pytest

from connector.core.actions import KEY_KINDS, ActionKey, AddNote, KeyParts, action_from_dict
from connector.platforms.base import marker_tag

MI, CHILD = "65b675cd0492c4f539b21c95055455e8", "t0007"

FORMS = [
    pytest.param(ActionKey.declare(MI), f"declare:{MI}", id="declare"),
    pytest.param(ActionKey.create("new-0123456789abcdef"), "create:new-0123456789abcdef", id="create"),
    pytest.param(ActionKey.link(CHILD, MI), f"link:{CHILD}:{MI}", id="link"),
    pytest.param(ActionKey.note(MI, "declared"), f"note:{MI}:declared", id="note-declared"),
    pytest.param(ActionKey.note(MI, "metrics"), f"note:{MI}:metrics", id="note-metrics"),
    pytest.param(ActionKey.note(MI, "metrics", 2), f"note:{MI}:metrics:r2", id="note-metrics-reopened"),
    pytest.param(ActionKey.note(MI, "waiting", 1), f"note:{MI}:waiting:r1", id="note-waiting-reopened"),
    pytest.param(ActionKey.note(MI, "change_done"), f"note:{MI}:change_done", id="note-change-done"),
    pytest.param(ActionKey.note(MI, "closed"), f"note:{MI}:closed", id="note-closed"),
    pytest.param(ActionKey.ooh_note(CHILD), f"note:{CHILD}:ooh", id="note-ooh"),
    pytest.param(ActionKey.stage(MI, "identification"), f"stage:{MI}:identification", id="stage"),
    pytest.param(ActionKey.stage(MI, "resolution", 1), f"stage:{MI}:resolution:r1", id="stage-reopened"),
    pytest.param(ActionKey.assign(MI), f"assign:{MI}", id="assign"),
    pytest.param(ActionKey.ooh(CHILD, MI), f"ooh:{CHILD}:{MI}", id="ooh"),
    pytest.param(ActionKey.change(MI), f"change:{MI}", id="change"),
    pytest.param(ActionKey.task(MI, 3), f"task:{MI}:3", id="task"),
    pytest.param(ActionKey.resolve(CHILD, MI), f"resolve:{CHILD}:{MI}", id="resolve"),
    pytest.param(ActionKey.resolve(CHILD, MI, 12), f"resolve:{CHILD}:{MI}:r12", id="resolve-reopened"),
    pytest.param(ActionKey.comms(MI, "declared"), f"comms:{MI}:declared", id="comms-declared"),
    pytest.param(ActionKey.comms(MI, "declared").public(), f"comms:{MI}:declared:public", id="comms-public"),
    pytest.param(ActionKey.comms(MI, "declared").hook("ops-chat"), f"comms:{MI}:declared:hook:ops-chat", id="comms-hook"),
    pytest.param(ActionKey.comms(MI, "update", 4), f"comms:{MI}:update:4", id="comms-update"),
    pytest.param(ActionKey.comms(MI, "update", 4).public(), f"comms:{MI}:update:4:public", id="comms-update-public"),
    pytest.param(ActionKey.comms(MI, "resolved", round=1), f"comms:{MI}:resolved:r1", id="comms-resolved-reopened"),
    pytest.param(ActionKey.comms(MI, "closed", round=1).hook("a:b"), f"comms:{MI}:closed:r1:hook:a:b",
                 id="comms-hook-name-with-colon"),
    pytest.param(ActionKey.stakeholders(MI), f"stakeholders:{MI}", id="stakeholders"),
    pytest.param(ActionKey.services(MI, 2), f"services:{MI}:2", id="services"),
    pytest.param(ActionKey.review(MI), f"review:{MI}", id="review"),
]


@pytest.mark.parametrize(("key", "written"), FORMS)
def test_every_kind_is_written_exactly_as_before_and_parses_back(key: ActionKey, written: str) -> None:
    assert key == written and str(key) == written and isinstance(key, str)
    parsed = ActionKey.parse(written)
    assert parsed == key and parsed.parts == key.parts and ActionKey.of(parsed.parts) == written
    assert parsed.kind == written.split(":", 1)[0] in KEY_KINDS
    assert marker_tag(key) == marker_tag(written), "the platform marker is the string's"


def test_the_forms_cover_every_kind() -> None:
    assert {p.values[0].kind for p in FORMS} == set(KEY_KINDS)


def test_the_markers_left_on_platforms_by_earlier_versions_still_match() -> None:
    # values written by the version before action keys were typed
    assert marker_tag(ActionKey.stage("1", "containment")) == "mim-714d9e54ee1b"
    assert marker_tag(ActionKey.comms("1", "update", 3).public()) == "mim-589e4cbae46a"


@pytest.mark.parametrize(("parts", "mi", "child"), [
    (KeyParts("link", mi="m", child="c"), "m", "c"),
    (KeyParts("note", child="c", topic="ooh"), None, "c"),
    (KeyParts("task", mi="m", number=1), "m", None),
], ids=["link", "ooh-note", "task"])
def test_parts_name_the_major_incident_and_the_child(parts: KeyParts, mi: str | None, child: str | None) -> None:
    key = ActionKey.of(parts)
    assert (key.mi, ActionKey.parse(key).parts.child) == (mi, child)


@pytest.mark.parametrize("text", [
    "note:1", "resolve:2", "task:1:pir", "stage:1", "fields:mi", "notify:mi", "declare:a:b", "link:a", "x:y", "",
    "comms:m:update", "comms:m:declared:3", "comms:m:declared:hook:", "comms:m:declared:internal",
    "task:m:01", "stage:m:containment:r0", "stage:m:Containment", "note:m:ooh:r1", "resolve:c:m:2",
])
def test_a_string_in_no_known_form_is_not_a_key(text: str) -> None:
    with pytest.raises(ValueError, match="not an action key"):
        ActionKey.parse(text)


@pytest.mark.parametrize("build", [
    lambda: ActionKey.declare("a:b"), lambda: ActionKey.link("", "m"), lambda: ActionKey.task("m", -1),
    lambda: ActionKey.comms("m", "update"), lambda: ActionKey.comms("m", "declared", 2),
    lambda: ActionKey.stage("m", "not a stage"), lambda: ActionKey.assign("m").public(),
    lambda: ActionKey.comms("m", "declared").public().hook("x"), lambda: ActionKey.comms("m", "declared").hook(""),
], ids=["colon-in-id", "empty-id", "negative-task", "update-without-number", "number-on-declared",
        "stage-not-a-word", "public-of-a-non-message", "hook-of-a-copy", "hook-without-name"])
def test_a_constructor_refuses_what_it_could_not_parse_back(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_a_key_survives_copies_and_the_ledger() -> None:
    key = ActionKey.note(MI, "metrics", 1)
    action = AddNote(key=key, target=MI, text="t")
    assert copy.deepcopy(key) == key and type(copy.deepcopy(key)) is ActionKey
    stored = json.loads(json.dumps(action.to_dict()))
    assert stored["key"] == f"note:{MI}:metrics:r1"
    assert ActionKey.parse(action_from_dict(stored).key) == key
