"""Embedders for long-term memory: offline recall on a labelled set, and the endpoint over HTTP."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from pgvector.django import CosineDistance

from employees.memory.embeddings import (
    EmbeddingError,
    OfflineEmbedder,
    OpenAIEmbedder,
    get_embedder,
    l2_normalise,
)
from employees.models import MemoryEntry, MemoryKind, MemoryScope
from tests.factories import EmployeeFactory
from tests.fakes.openai_server import FakeOpenAIServer, fake_embedding

EVAL = json.loads((Path(__file__).parent / "data" / "memory_eval.json").read_text())
MEMORIES = [memory["text"] for memory in EVAL["memories"]]
DIMENSIONS = django_settings.MEMORY_EMBEDDING_DIMENSIONS


def dot(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def norm(vector: list[float]) -> float:
    return math.sqrt(dot(vector, vector))


def ranking(query: list[float], memories: list[list[float]]) -> list[int]:
    """Memory indexes, most similar first (ties by index, so the order is stable)."""
    return sorted(range(len(memories)), key=lambda i: (-dot(query, memories[i]), i))


# --- Offline embedder ----------------------------------------------------------------------------


def test_offline_embedder_ranks_the_labelled_memory_first_for_most_queries():
    embedder = OfflineEmbedder(dimensions=DIMENSIONS)
    memories = embedder.embed(MEMORIES)
    queries = embedder.embed([query["text"] for query in EVAL["queries"]])
    ranks = []
    for query, vector in zip(EVAL["queries"], queries, strict=True):
        rank = ranking(vector, memories).index(query["expected"]) + 1
        ranks.append(rank)
        if rank > 1:
            print(f"rank {rank}: {query['text']!r}")
    hit_rate = sum(rank == 1 for rank in ranks) / len(ranks)
    mrr = sum(1 / rank for rank in ranks) / len(ranks)
    print(f"offline embedder: hit@1 {hit_rate:.3f}, MRR {mrr:.3f} over {len(ranks)} queries")
    assert hit_rate >= 0.8


def test_offline_embedder_matches_inflections_and_typos_not_synonyms():
    embedder = OfflineEmbedder(dimensions=DIMENSIONS)
    memory, inflected, typo, synonym, unrelated = embedder.embed(
        [
            "The VPN certificate expires every 90 days.",
            "When did the VPN certificates expire?",
            "my vpn certifcate expired",
            "How often does the remote-access key lapse?",
            "Parental leave is 16 weeks at full pay.",
        ]
    )
    assert dot(memory, inflected) > 0.5
    assert dot(memory, typo) > 0.3
    # No shared words, so no better than an unrelated text, give or take hash collisions.
    assert abs(dot(memory, synonym)) < 0.15 and abs(dot(memory, unrelated)) < 0.15


def test_offline_vectors_are_unit_length_with_the_configured_dimensions():
    for dimensions in (DIMENSIONS, 64):
        vectors = OfflineEmbedder(dimensions=dimensions).embed([*MEMORIES[:5], "x"])
        assert all(len(vector) == dimensions for vector in vectors)
        assert all(norm(vector) == pytest.approx(1.0) for vector in vectors)


def test_offline_embedder_gives_the_zero_vector_for_text_with_nothing_to_embed():
    vectors = OfflineEmbedder(dimensions=DIMENSIONS).embed(["", "   ", "?!", "Refund."])
    assert vectors[:3] == [[0.0] * DIMENSIONS] * 3
    assert norm(vectors[3]) == pytest.approx(1.0)
    assert l2_normalise([0.0, 0.0]) == [0.0, 0.0]


def test_offline_embedder_is_deterministic_across_calls_and_processes():
    text = "Jane Doe at Acme prefers email over phone calls."
    embedder = OfflineEmbedder(dimensions=DIMENSIONS)
    first = embedder.embed([text])[0]
    assert embedder.embed([text, "other"])[0] == first
    script = (
        "import json, sys; from employees.memory.embeddings import OfflineEmbedder; "
        "print(json.dumps(OfflineEmbedder(dimensions=int(sys.argv[2])).embed([sys.argv[1]])[0]))"
    )
    # A different string-hash seed: the features must not depend on Python's salted hash().
    env = {
        **os.environ,
        "PYTHONHASHSEED": "12345",
        "DJANGO_SETTINGS_MODULE": "aiworkforce.settings",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, text, str(DIMENSIONS)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert json.loads(result.stdout) == first


def test_offline_embedder_embeds_a_thousand_texts_well_under_a_second():
    # Fresh random words, so the stem and hash caches do not help.
    rng = random.Random(7)
    vocabulary = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 10)))
        for _ in range(5000)
    ]
    texts = [" ".join(rng.choices(vocabulary, k=12)) for _ in range(1000)]
    started = time.perf_counter()
    vectors = OfflineEmbedder(dimensions=DIMENSIONS).embed(texts)
    elapsed = time.perf_counter() - started
    print(f"offline embedder: 1,000 texts in {elapsed:.3f}s")
    assert len(vectors) == 1000
    # About 0.3 s on an idle two-core machine; the bound is loose so a loaded CI box does not
    # fail it, and still catches an embedder that went quadratic (it is timed in earnest by
    # ./workforce bench memory).
    assert elapsed < 3.0


@pytest.mark.django_db
def test_offline_vectors_rank_the_same_in_pgvector():
    embedder = OfflineEmbedder(dimensions=DIMENSIONS)
    employee = EmployeeFactory()
    texts = [*MEMORIES, ""]  # the empty memory has the zero vector
    entries = MemoryEntry.objects.bulk_create(
        MemoryEntry(
            scope=MemoryScope.EMPLOYEE,
            employee=employee,
            kind=MemoryKind.FACT,
            text=text,
            embedding=vector,
        )
        for text, vector in zip(texts, embedder.embed(texts), strict=True)
    )
    query = embedder.embed([EVAL["queries"][0]["text"]])[0]
    found = list(
        MemoryEntry.objects.filter(employee=employee)
        .annotate(distance=CosineDistance("embedding", query))
        .order_by("distance", "id")
        .values_list("id", "distance")
    )
    # pgvector's cosine distance to the zero vector is NaN, which PostgreSQL sorts last.
    assert found[-1][0] == entries[-1].pk and math.isnan(found[-1][1])
    in_python = ranking(query, embedder.embed(MEMORIES))
    assert [pk for pk, _ in found[:3]] == [entries[i].pk for i in in_python[:3]]


# --- OpenAI-compatible endpoint ------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def embedder(server: FakeOpenAIServer, settings) -> OpenAIEmbedder:
    settings.LLM_MAX_RETRIES = 0
    return OpenAIEmbedder(
        model="text-embedding-3-small",
        dimensions=DIMENSIONS,
        base_url=server.base_url,
        api_key="test",
    )


def embedding_requests(server: FakeOpenAIServer) -> list[dict]:
    return [r["body"] for r in server.requests if r["path"] == "/v1/embeddings"]


def test_endpoint_embeds_in_batches_of_at_most_256_in_order(server, embedder):
    texts = [f"memory number {i}" for i in range(600)]
    vectors = embedder.embed(texts)

    requests = embedding_requests(server)
    assert [len(body["input"]) for body in requests] == [256, 256, 88]
    assert {(body["model"], body["dimensions"]) for body in requests} == {
        ("text-embedding-3-small", DIMENSIONS)
    }
    assert [text for body in requests for text in body["input"]] == texts
    for text, vector in zip(texts[::50], vectors[::50], strict=True):
        assert vector == pytest.approx(fake_embedding(text, DIMENSIONS), abs=1e-6)


def test_endpoint_vectors_are_normalised(server, embedder, monkeypatch):
    answer = server._embeddings

    def unnormalised(body: dict) -> dict:
        payload = answer({**body, "encoding_format": "float"})
        for item in payload["data"]:
            item["embedding"] = [3.0 * x for x in item["embedding"]]
        return payload

    monkeypatch.setattr(server, "_embeddings", unnormalised)
    vectors = embedder.embed(["Refunds above $500 need sign-off.", "VPN"])
    assert [norm(vector) for vector in vectors] == pytest.approx([1.0, 1.0])


def test_endpoint_is_not_sent_blank_texts(server, embedder):
    vectors = embedder.embed(["", "Acme renews in March", "  "])
    assert [body["input"] for body in embedding_requests(server)] == [["Acme renews in March"]]
    assert vectors[0] == vectors[2] == [0.0] * DIMENSIONS
    assert norm(vectors[1]) == pytest.approx(1.0)
    assert embedder.embed([]) == []


def test_endpoint_answering_another_dimension_is_a_clear_error(server, embedder, monkeypatch):
    answer = server._embeddings
    # An endpoint that ignores the requested `dimensions`, as older models do.
    monkeypatch.setattr(server, "_embeddings", lambda body: answer({**body, "dimensions": 1536}))
    expected = r"returned 1536 dimensions but MEMORY_EMBEDDING_DIMENSIONS is 384: .*'text-emb"
    with pytest.raises(EmbeddingError, match=expected):
        embedder.embed(["Jane Doe at Acme prefers email."])


def test_endpoint_failure_is_an_embedding_error(server, settings):
    settings.LLM_MAX_RETRIES = 0
    wrong_path = OpenAIEmbedder(
        model="m", dimensions=DIMENSIONS, base_url=f"{server.base_url}/nope", api_key="test"
    )
    with pytest.raises(EmbeddingError, match=r"The embedding endpoint failed: .*404"):
        wrong_path.embed(["hello"])


# --- Choosing an embedder ------------------------------------------------------------------------


def test_offline_embedder_without_a_key_or_without_a_model(settings):
    settings.OPENAI_API_KEY = ""
    settings.MEMORY_EMBEDDING_MODEL = "text-embedding-3-small"
    assert isinstance(get_embedder(), OfflineEmbedder)
    settings.OPENAI_API_KEY = "sk-test"
    settings.MEMORY_EMBEDDING_MODEL = ""
    assert isinstance(get_embedder(), OfflineEmbedder)
    del settings.MEMORY_EMBEDDING_MODEL  # a settings module without the line at all
    embedder = get_embedder()
    assert isinstance(embedder, OfflineEmbedder)
    assert embedder.dimensions == DIMENSIONS


def test_endpoint_embedder_with_a_key_and_a_model(server, settings):
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = server.base_url
    settings.MEMORY_EMBEDDING_MODEL = "text-embedding-3-small"
    settings.MEMORY_EMBEDDING_DIMENSIONS = 256
    embedder = get_embedder()
    assert isinstance(embedder, OpenAIEmbedder)
    assert (embedder.name, embedder.dimensions) == ("openai:text-embedding-3-small", 256)
    assert len(embedder.embed(["hello"])[0]) == 256
    assert embedding_requests(server)[0]["dimensions"] == 256
