"""Making a prompt fit the model's context window, by one stated policy (see the README).

A prompt that fits is sent as it is. One that does not is made to fit, in this order:
1. long texts (tool results, the task input, the recalled memories) are cut to a share of
   the window, each with a visible marker;
2. then the oldest turns (a model answer with its tool results) are left out, replaced by
   one line saying how many; the latest turn is always kept;
3. then the longest texts left are cut further until the prompt fits.
Only what the model is shown changes: the prompt is rebuilt from the recorded steps on every
turn, so the full texts stay in the steps and on the task page. The brief and SOP are never
cut; if they alone do not fit, the task cannot run on this model (ContextTooSmall).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiworkforce.llm import estimate_tokens
from tasks.context import MEMORIES_CLOSE, UNTRUSTED_CLOSE

# Room kept free for the estimate's error (it counts about three characters a token).
SAFETY_SHARE = 0.05
# A text is cut first when it is longer than this share of the room for the prompt.
TEXT_SHARE = 0.25
MIN_KEPT_CHARS = 500
CLOSING_MARKERS = (UNTRUSTED_CLOSE, MEMORIES_CLOSE)

CUT_MARKER = (
    "\n[... cut to fit the model's context window: {kept:,} of {total:,} characters shown; "
    "the full text is kept in the task's record]"
)
DROPPED_NOTE = (
    "[{count} earlier turn{s} of this task (model answers and their tool results) were left "
    "out to fit the model's context window; their full record is kept in the task's steps.]"
)


class ContextTooSmall(Exception):
    """Even the brief and SOP alone do not fit the model's window; the message is for people."""


@dataclass
class Fitted:
    messages: list[dict]
    window: int
    cut: list[dict] = field(default_factory=list)
    dropped_turns: int = 0
    # Per message (by id) while fitting: its full text, and how much of it is shown.
    originals: dict[int, str] = field(default_factory=dict, repr=False)
    shown: dict[int, int] = field(default_factory=dict, repr=False)

    @property
    def changed(self) -> bool:
        return bool(self.cut or self.dropped_turns)

    def report(self) -> dict:
        """What the step records (and the task page shows) when the prompt was made to fit."""
        return {"window": self.window, "cut": self.cut, "dropped_turns": self.dropped_turns}


def fit_to_window(
    messages: list[dict], *, window: int, output_tokens: int, tools_chars: int
) -> Fitted:
    """The messages to send, made to fit `window` tokens with `output_tokens` left to answer."""
    room = int(window * (1 - SAFETY_SHARE)) - output_tokens
    if estimate_tokens(messages, tools_chars) <= room:
        return Fitted(messages=messages, window=window)
    messages = [dict(message) for message in messages]
    fitted = Fitted(messages=messages, window=window)
    head, turns = _split(messages)
    if estimate_tokens(messages[:1], tools_chars) > room:
        raise ContextTooSmall(
            f"The brief, SOP and tool descriptions alone need about "
            f"{estimate_tokens(messages[:1], tools_chars):,} tokens; the model's context window "
            f"is {window:,} tokens with {output_tokens:,} kept for its answer. Use a model with a "
            "larger window (or set the employee's context window if it is larger than assumed)."
        )
    room_chars = max(0, (room - estimate_tokens(messages[:1], tools_chars)) * 3)  # ASCII-ish
    # 1. Every long text down to its share.
    share = max(MIN_KEPT_CHARS, int(room_chars * TEXT_SHARE))
    for message in _cuttable(head, turns):
        _cut(message, share, fitted)

    def fits() -> bool:
        return estimate_tokens(_join(head, turns, fitted), tools_chars) <= room

    # 2. The oldest turns out, the latest kept.
    while not fits() and len(turns) > 1:
        turns.pop(0)
        fitted.dropped_turns += 1
    # 3. The longest texts left, cut further, while that still makes room.
    while not fits():
        shrinkable = [m for m in _cuttable(head, turns) if _shown(m, fitted) > MIN_KEPT_CHARS]
        if not shrinkable:
            raise ContextTooSmall(
                f"Even with its long texts cut and {fitted.dropped_turns} earlier turns left "
                f"out, this task's prompt needs about "
                f"{estimate_tokens(_join(head, turns, fitted), tools_chars):,} tokens; the "
                f"model's context window is {window:,} tokens with {output_tokens:,} kept for "
                "its answer. Use a model with a larger window (or set the employee's context "
                "window if it is larger than assumed)."
            )
        longest = max(shrinkable, key=lambda m: _shown(m, fitted))
        excess = estimate_tokens(_join(head, turns, fitted), tools_chars) - room
        original = fitted.originals.get(id(longest), longest["content"])
        # Characters per token of this text, so a Japanese e-mail is not cut five times too far.
        density = max(1.0, len(original) / max(1, _text_tokens(original)))
        keep = _shown(longest, fitted) - int(excess * density) - 64
        _cut(longest, max(MIN_KEPT_CHARS, keep), fitted)
    fitted.messages = _join(head, turns, fitted)
    return fitted


def _split(messages: list[dict]) -> tuple[list[dict], list[list[dict]]]:
    """The system prompt, task and memories; then the turns, each a model answer and replies."""
    head: list[dict] = []
    turns: list[list[dict]] = []
    for message in messages:
        if message["role"] == "assistant":
            turns.append([message])
        elif turns:
            turns[-1].append(message)
        else:
            head.append(message)
    return head, turns


def _join(head: list[dict], turns: list[list[dict]], fitted: Fitted) -> list[dict]:
    joined = list(head)
    if fitted.dropped_turns:
        s = "" if fitted.dropped_turns == 1 else "s"
        note = DROPPED_NOTE.format(count=fitted.dropped_turns, s=s)
        joined.append({"role": "user", "content": note})
    for turn in turns:
        joined.extend(turn)
    return joined


def _cuttable(head: list[dict], turns: list[list[dict]]) -> list[dict]:
    """Texts that may be cut: everything but the system prompt and the model's own words."""
    candidates = head[1:] + [m for turn in turns for m in turn if m["role"] != "assistant"]
    return [m for m in candidates if isinstance(m.get("content"), str)]


def _shown(message: dict, fitted: Fitted) -> int:
    """How many characters of the message's own text the model is shown (marker not counted)."""
    return fitted.shown.get(id(message), len(message.get("content") or ""))


def _text_tokens(text: str) -> int:
    return estimate_tokens([{"content": text}], 0)


def _cut(message: dict, keep: int, fitted: Fitted) -> None:
    """Show only the first `keep` characters of a text, with the marker saying so.

    A block's closing marker (the untrusted input's, the memories') stays, so what follows
    is never read as part of the block.
    """
    original = fitted.originals.setdefault(id(message), message["content"])
    if _shown(message, fitted) <= keep:
        return
    kept = original[: max(0, keep)]
    fitted.shown[id(message)] = len(kept)
    closing = next((c for c in CLOSING_MARKERS if original.rstrip().endswith(c)), "")
    message["content"] = (
        kept
        + CUT_MARKER.format(kept=len(kept), total=len(original))
        + (f"\n{closing}" if closing else "")
    )
    what = _describe(message, original)
    fitted.cut = [entry for entry in fitted.cut if entry["what"] != what]
    fitted.cut.append({"what": what, "chars": len(original), "kept": len(kept)})


def _describe(message: dict, content: str) -> str:
    if message["role"] == "tool":
        return f"tool result {message.get('tool_call_id', '')}".strip()
    if content.startswith("Task #"):
        return "task input"
    if content.startswith("<<<RECALLED_MEMORIES"):
        return "recalled memories"
    return "note"
