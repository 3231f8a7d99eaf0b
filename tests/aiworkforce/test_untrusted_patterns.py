"""Regular expressions applied to untrusted text (task input, webhook bodies, uploaded documents,
model output) run in linear time: 256 kB of each pattern's worst case takes well under a second,
and ordinary text gives the same results as before."""

from __future__ import annotations

import random
import re
import time

import pytest

from aiworkforce.audit import redact
from aiworkforce.llm.offline import OfflineEngine
from employees.memory.chunking import chunk_markdown, chunk_plain, markdown_sections
from employees.memory.embeddings import OfflineEmbedder
from tasks.context import cited_memories

SIZE = 256 * 1024  # a webhook body at WEBHOOK_MAX_BYTES
LIMIT_SECONDS = 0.5


def _fill(unit: str, prefix: str = "", suffix: str = "") -> str:
    return prefix + unit * ((SIZE - len(prefix) - len(suffix)) // len(unit)) + suffix


def _offline(text: str) -> OfflineEngine:
    return OfflineEngine(sop=[], title="t", task_input=text)


def _sections(text: str) -> list[tuple[str, str]]:
    return list(markdown_sections(text))


ADVERSARIAL = {
    # The e-mail pattern used to try every start inside a run of address characters (quadratic).
    "email: letters, no @": (_offline, _fill("a")),
    "email: dotted words, no @": (_offline, _fill("a.")),
    "email: address characters then an @ without a domain dot": (_offline, _fill("a", "", "@b")),
    "email: many @s": (_offline, _fill("a@")),
    "email: @ then a long domain without a dot": (_offline, _fill("-", "a@b")),
    "url: many schemes without a host": (_offline, _fill("http:/")),
    "reference: letters and dashes without digits": (_offline, _fill("ABCDE-")),
    "reference: dashes and digits": (_offline, _fill("A-1-")),
    # The heading pattern's lazy title and optional closing runs (quadratic on one long line).
    "heading: a line of spaces after '# x'": (_sections, _fill(" ", "# x", "x")),
    "heading: spaces and tabs after '#'": (_sections, _fill(" \t", "#")),
    "heading: hashes and spaces": (_sections, _fill(" #", "# a", "x")),
    "paragraph and sentence split: newline then spaces": (
        lambda text: chunk_plain(text, size=1200, overlap=200),
        _fill(" ", "a.\n"),
    ),
    "sentence split and overlap: end marks and spaces": (
        lambda text: chunk_markdown(text, size=1200, overlap=200),
        _fill('a." \n'),
    ),
    "embedder tokenizer: underscores and apostrophes": (
        lambda text: OfflineEmbedder().embed([text]),
        _fill("ab_'"),
    ),
    "audit redaction: a huge secret-looking key": (lambda text: redact({text: 1}), _fill("_pass")),
    "citations: brackets without an end": (
        lambda text: cited_memories(text, {1}),
        _fill("[m1"),
    ),
}


@pytest.mark.parametrize("case", list(ADVERSARIAL))
def test_256_kb_of_a_patterns_worst_case_is_processed_in_well_under_a_second(case):
    function, text = ADVERSARIAL[case]
    started = time.perf_counter()
    function(text)
    elapsed = time.perf_counter() - started
    assert elapsed < LIMIT_SECONDS, f"{case}: {elapsed:.2f} s for {len(text)} characters"


def test_the_offline_engine_still_finds_the_first_email_and_url():
    engine = _offline(
        "From: Mary <mary.oneil+billing@mail.example.co.uk>, cc bob@example.com\n"
        "See https://status.example.com/incidents/42) and http://other.example.org."
    )
    assert engine.values["first_email"] == "mary.oneil+billing@mail.example.co.uk"
    assert engine.values["first_url"] == "https://status.example.com/incidents/42"
    assert _offline("write to a.b-c@d-e.example.org.").values["first_email"] == (
        "a.b-c@d-e.example.org"
    )
    assert _offline("x@y@z.example, then more").values["first_email"] == "y@z.example"
    assert _offline("no@address here").values["first_email"] == ""
    assert _offline("nothing to see").values["first_url"] == ""


# The patterns as they were: the new ones must find exactly what these found.
_OLD_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_OLD_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")


def _short_strings(alphabet: str, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(alphabet, k=rng.randint(0, 12))) for _ in range(count)]


def test_the_first_email_is_the_one_the_old_pattern_found():
    for text in _short_strings("ab.+-@ _\n1é", 20000, seed=1):
        old = _OLD_EMAIL.search(text)
        assert _offline(text).values["first_email"] == (old.group(0) if old else ""), text


def test_headings_are_parsed_as_the_old_pattern_parsed_them():
    assert list(markdown_sections("# Refunds ##\nAsk.\n## Eligibility\t#\nDays.")) == [
        ("Refunds", "Ask."),
        ("Refunds \u203a Eligibility", "Days."),
    ]
    for text in _short_strings("#  \t\tab\r\u00a0", 20000, seed=2):
        line = "#" * (len(text) % 8) + text
        old = _OLD_HEADING.match(line)
        expected = (old.group(2).strip(), "body") if old else ("", f"{line}\nbody".strip())
        assert list(markdown_sections(f"{line}\nbody")) == [expected], repr(line)
