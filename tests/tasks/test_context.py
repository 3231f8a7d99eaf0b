"""What the model is shown: the prompt made to fit the model's context window."""

from __future__ import annotations

import pytest

from tasks.context_window import ContextTooSmall, fit_to_window


def _conversation(tool_result_chars: int, turns: int = 1) -> list[dict]:
    messages = [
        {"role": "system", "content": "You are Ava, a support specialist."},
        {"role": "user", "content": "Task #1\n<<<UNTRUSTED_TASK_INPUT\nHelp.\nUNTRUSTED>>>"},
    ]
    for turn in range(turns):
        call = {"id": f"c{turn}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append(
            {"role": "tool", "tool_call_id": f"c{turn}", "content": "r" * tool_result_chars}
        )
    return messages


def test_a_prompt_that_fits_is_sent_as_it_is():
    messages = _conversation(1000)
    fitted = fit_to_window(messages, window=128_000, output_tokens=4000, tools_chars=500)
    assert fitted.messages is messages and not fitted.changed


def test_a_long_tool_result_is_cut_with_a_marker_saying_how_much():
    fitted = fit_to_window(_conversation(60_000), window=8192, output_tokens=2000, tools_chars=0)
    tool = fitted.messages[-1]
    assert tool["role"] == "tool" and tool["content"].startswith("rrrr")
    assert "of 60,000 characters shown" in tool["content"]
    assert fitted.cut == [
        {"what": "tool result c0", "chars": 60_000, "kept": fitted.cut[0]["kept"]}
    ]
    assert set(fitted.messages[-1]) == {"role", "tool_call_id", "content"}  # nothing private


def test_old_turns_go_before_the_latest_is_cut_further():
    fitted = fit_to_window(
        _conversation(3000, turns=8), window=4096, output_tokens=500, tools_chars=0
    )
    assert fitted.dropped_turns >= 1
    assert "earlier turn" in fitted.messages[2]["content"]
    assert fitted.messages[-1]["tool_call_id"] == "c7"  # the latest turn is kept
    # The result stays within the window by the same estimate the loop uses.
    from aiworkforce.llm import estimate_tokens

    assert estimate_tokens(fitted.messages, 0) <= 4096 - 500


def test_a_brief_longer_than_the_window_is_refused_with_a_reason():
    messages = [{"role": "system", "content": "s" * 40_000}, {"role": "user", "content": "hi"}]
    with pytest.raises(ContextTooSmall, match="context window is 4,096 tokens"):
        fit_to_window(messages, window=4096, output_tokens=500, tools_chars=0)
