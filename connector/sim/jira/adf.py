"""Atlassian Document Format (ADF): the rich-text bodies of Jira Cloud's REST v3, to and from plain text."""

from __future__ import annotations

from typing import Any


def adf_from_text(text: str) -> dict[str, Any]:
    """Wrap plain text in a minimal Atlassian Document Format document (one paragraph per line)."""
    content: list[dict[str, Any]] = []
    for line in text.split("\n"):
        paragraph: dict[str, Any] = {"type": "paragraph", "content": []}
        if line:
            paragraph["content"].append({"type": "text", "text": line})
        content.append(paragraph)
    return {"type": "doc", "version": 1, "content": content if text else []}


def adf_to_text(node: Any) -> str:
    """Flatten an ADF document to plain text (block nodes become lines)."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "hardBreak":
        return "\n"
    parts = [adf_to_text(child) for child in node.get("content", []) or []]
    if kind in ("doc", "bulletList", "orderedList", "table", "tableRow"):
        return "\n".join(parts)
    return "".join(parts)


def adf_problem(node: Any, top: bool = True) -> str | None:
    """Why ``node`` is not a valid ADF document (``None`` when it is)."""
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        return "not an ADF node"
    if top:
        if node.get("type") != "doc" or node.get("version") != 1:
            return "top-level node must be {'type': 'doc', 'version': 1}"
        if not isinstance(node.get("content"), list):
            return "doc must have a content list"
    if node.get("type") == "text" and not isinstance(node.get("text"), str):
        return "text node without text"
    content = node.get("content")
    if content is not None:
        if not isinstance(content, list):
            return "content must be a list"
        for child in content:
            problem = adf_problem(child, top=False)
            if problem:
                return problem
    return None
