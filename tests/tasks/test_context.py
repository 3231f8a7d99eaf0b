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


def _with_brief(brief_chars: int, input_chars: int, results: list[int]) -> list[dict]:
    messages = [
        {"role": "system", "content": "b" * brief_chars},
        {
            "role": "user",
            "content": f"Task #1\n<<<UNTRUSTED_TASK_INPUT\n{'i' * input_chars}\n"
            "UNTRUSTED_TASK_INPUT>>>",
        },
    ]
    calls = [
        {"id": f"c{n}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        for n in range(len(results))
    ]
    messages.append({"role": "assistant", "content": None, "tool_calls": calls})
    for n, size in enumerate(results):
        messages.append({"role": "tool", "tool_call_id": f"c{n}", "content": "r" * size})
    return messages


@pytest.mark.parametrize(
    "brief, task_input, results",
    [(7_800, 25_000, [60_000]), (1_000, 100, [3_000] * 20), (9_000, 25_000, [60_000] * 3)],
)
def test_fitting_always_ends_within_the_window_or_says_why(brief, task_input, results):
    from aiworkforce.llm import estimate_tokens

    messages = _with_brief(brief, task_input, results)
    try:
        fitted = fit_to_window(messages, window=8192, output_tokens=4000, tools_chars=0)
    except ContextTooSmall as exc:
        assert "context window is 8,192 tokens" in str(exc)
        return
    assert estimate_tokens(fitted.messages, 0) <= 8192 * 0.95 - 4000


def test_a_cut_task_input_keeps_its_closing_marker():
    fitted = fit_to_window(
        _with_brief(500, 40_000, [100]), window=8192, output_tokens=2000, tools_chars=0
    )
    task = fitted.messages[1]["content"]
    assert "cut to fit" in task and task.endswith("\nUNTRUSTED_TASK_INPUT>>>")
    assert task.count("UNTRUSTED_TASK_INPUT>>>") == 1


def test_text_of_many_tokens_a_character_is_counted_as_such():
    from aiworkforce.llm import estimate_tokens

    japanese = "注文番号の荷物が破損して届きました。" * 400
    assert estimate_tokens([{"content": japanese}], 0) >= len(japanese)
