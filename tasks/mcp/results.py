"""What the model is given of an MCP tool's answer: its content as text, cut to a size."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import mcp_types


@dataclass(frozen=True)
class CallResult:
    """A tool's answer, cut down to what a prompt can hold."""

    text: str  # the content as text, at most max_bytes UTF-8 bytes (see _cap)
    is_error: bool  # the server's isError: the tool failed, the protocol did not
    structured: dict | None  # structuredContent; None too when its JSON is over max_bytes
    truncated: bool  # the text was cut or the structured content dropped


def call_result(result: mcp_types.CallToolResult, max_bytes: int) -> CallResult:
    text = "\n".join(_block_text(block) for block in result.content)
    structured = result.structured_content
    dropped = False
    if structured is not None:
        encoded = json.dumps(structured, ensure_ascii=False)
        if not text:  # the spec asks servers to mirror structured content as text; not all do
            text = encoded
        if len(encoded.encode()) > max_bytes:
            structured, dropped = None, True
    text, cut = _cap(text, max_bytes)
    return CallResult(
        text=text, is_error=bool(result.is_error), structured=structured, truncated=cut or dropped
    )


def _block_text(block: Any) -> str:
    if isinstance(block, mcp_types.TextContent):
        return block.text
    if isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
        return f"[{block.type} {block.mime_type}, {_decoded_size(block.data):,} bytes]"
    if isinstance(block, mcp_types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, mcp_types.TextResourceContents):
            return f"[resource {resource.uri}]\n{resource.text}"
        mime_type = resource.mime_type or "application/octet-stream"
        return f"[resource {resource.uri} {mime_type}, {_decoded_size(resource.blob):,} bytes]"
    if isinstance(block, mcp_types.ResourceLink):
        return f"[resource link {block.uri}: {block.name}]"
    return f"[{getattr(block, 'type', 'unknown')} content]"


def _decoded_size(base64_data: str) -> int:
    return len(base64_data.rstrip("=")) * 3 // 4


def _cap(text: str, max_bytes: int) -> tuple[str, bool]:
    """At most max_bytes UTF-8 bytes, the "\\n[… cut: N bytes more]" marker included (a smaller
    max_bytes gives just the marker), cut on a character boundary."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text, False
    reserve = len(_cut_marker(len(data)).encode()) + 1  # the count can only shrink
    kept = data[: max(0, max_bytes - reserve)].decode(errors="ignore")
    omitted = len(data) - len(kept.encode())
    return f"{kept}\n{_cut_marker(omitted)}", True


def _cut_marker(omitted: int) -> str:
    return f"[… cut: {omitted} bytes more]"
