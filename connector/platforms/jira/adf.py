"""Atlassian Document Format: plain text as an ADF document (Cloud bodies) and the text of one back."""

from __future__ import annotations

from typing import Any


def adf_document(text: str) -> dict[str, Any]:
    """Plain text as a minimal Atlassian Document Format document, one paragraph per line."""
    content: list[dict[str, Any]] = []
    for line in text.split("\n"):
        paragraph: dict[str, Any] = {"type": "paragraph", "content": []}
        if line:
            paragraph["content"].append({"type": "text", "text": line})
        content.append(paragraph)
    return {"type": "doc", "version": 1, "content": content}


def adf_plain_text(node: Any) -> str:
    """The text of an ADF document (block nodes become lines); strings are returned as they are."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "\n".join(adf_plain_text(child) for child in node)
    if not isinstance(node, dict):
        return ""
    if node.get("type") == "text":
        return str(node.get("text", ""))
    if node.get("type") == "hardBreak":
        return "\n"
    parts = [adf_plain_text(child) for child in node.get("content") or []]
    if node.get("type") in ("doc", "bulletList", "orderedList", "table", "tableRow", "listItem"):
        return "\n".join(parts)
    return "".join(parts)


def is_adf(value: Any) -> bool:
    """Whether ``value`` is an ADF document."""
    return isinstance(value, dict) and value.get("type") == "doc" and "content" in value


__all__ = ["adf_document", "adf_plain_text", "is_adf"]
