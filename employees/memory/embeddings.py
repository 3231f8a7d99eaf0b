"""Embeddings for long-term memory: an OpenAI-compatible endpoint, or an offline hashing embedder.

`get_embedder()` picks the endpoint when ``OPENAI_API_KEY`` and ``MEMORY_EMBEDDING_MODEL`` are
both set, else the offline embedder; either way vectors have ``MEMORY_EMBEDDING_DIMENSIONS``
entries and unit length, so pgvector's cosine distance ranks them. Vectors from different
embedders (or models) live in unrelated spaces: changing embedder means re-embedding every memory.

Text with nothing to embed (empty, or only punctuation for the offline embedder) gets the zero
vector rather than an error. Its cosine distance to anything is undefined (pgvector answers NaN,
which sorts last), so such a memory is never a match; callers may prefer to store NULL.

How good is the offline embedder? It is lexical, not semantic. Each text becomes weighted
features hashed into one vector (word stems 55% of the squared norm, word bigrams 15%, character
trigrams 30%), so the cosine of two texts is roughly that mix of their per-family cosines.

* It captures shared words once case, punctuation, filler words ("the", "can", "do") and crude
  inflection are set aside: "refunds" ~ "refund", "renewed" ~ "renews", "Acme's" ~ "Acme".
* Trigrams give partial credit for related forms the stemmer misses ("renewal" ~ "renew",
  "deploy" ~ "deployments") and for typos ("certifcate" ~ "certificate"), and carry names,
  product codes and numbers well.
* Bigrams reward the same phrase ("shared drive", "finance lead") over the same words scattered.
* It cannot see meaning without shared letters: synonyms ("food allowance" vs "meals are
  reimbursed", "maternity" vs "parental"), paraphrase, negation ("not support"), or arithmetic
  ("$750" is above "$500"). A query only finds a memory when they share words or word pieces.
* Common domain words ("customer", "days") are not down-weighted as IDF would, since the
  embedder sees one text at a time.
* Hashing into 384 dimensions adds noise: the cosine of two unrelated texts scatters around 0
  with a standard deviation of about 1/sqrt(384) = 0.05, about what one shared word out of ten
  is worth. A single weak overlap can lose to chance; two or three shared words rarely do.

On the labelled set in tests/employees/data/memory_eval.json (33 memories, 30 task-style
questions) it ranks the intended memory first for 24 of 30 (hit@1 0.80, MRR 0.84); the six misses
are synonym and paraphrase cases ("money back" for "refund", "maternity" for "parental",
"paperwork" for "doctor's note"). Use an embedding model for real semantic recall.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections import Counter
from functools import lru_cache
from typing import Protocol

import openai
from django.conf import settings

from aiworkforce.llm.openai_provider import _client


class Embedder(Protocol):
    dimensions: int
    name: str
    # True when embedding is cheap and in-process (then memories are embedded as they are stored).
    local: bool

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One L2-normalised vector of `dimensions` floats per text, in order."""
        ...


class EmbeddingError(Exception):
    """The embedding endpoint failed, or answered with vectors we cannot store."""


def get_embedder() -> Embedder:
    """The endpoint's embedder given a key and MEMORY_EMBEDDING_MODEL, else the offline one."""
    dimensions = settings.MEMORY_EMBEDDING_DIMENSIONS
    model = getattr(settings, "MEMORY_EMBEDDING_MODEL", "")
    if settings.OPENAI_API_KEY and model:
        return OpenAIEmbedder(
            model=model,
            dimensions=dimensions,
            base_url=settings.OPENAI_BASE_URL,
            api_key=settings.OPENAI_API_KEY,
        )
    return OfflineEmbedder(dimensions=dimensions)


def l2_normalise(vector: list[float]) -> list[float]:
    """`vector` scaled to unit length; the zero vector stays zero (it has no direction)."""
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0:
        return [0.0] * len(vector)
    return [x / norm for x in vector]


# --- Offline -------------------------------------------------------------------------------------

# Shares of the squared norm per feature family, so that for two texts the cosine is about
# 0.55 * word cosine + 0.15 * bigram cosine + 0.30 * trigram cosine.
_FAMILY_WEIGHTS = {"w": 0.55, "b": 0.15, "t": 0.30}

# Words that say little about what a memory is about; apostrophes are removed before matching.
_STOP_WORDS_TEXT = """
    a about after all also am an and any anyone are as at be been before being both but by can
    cant could did do does doesnt dont each either every for from get got had has have he her
    here him his how i if im in into is isnt it its ive just may me might more most must my need
    needs no not now of on only or other our own per same shall should so some such than that
    thats the their them then there these they this those to too up us very was we were what
    whats when where which who whom why will with within would you your
"""
_STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
_TOKEN = re.compile(r"[^\W_]+")
_APOSTROPHES = re.compile(r"['\u2019]")
_VOWELS = frozenset("aeiouy")


@lru_cache(maxsize=16384)
def _stem(word: str) -> str:
    """A crude suffix stripper (plurals, -ly, -ing, -ed, a final -e), so inflections meet."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ly") and len(word) > 5:
        word = word[:-2]  # "remotely" -> "remote", "monthly" -> "month"; not "daily", "apply"
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and not word.endswith("eed"):
            stem = word[: -len(suffix)]
            if len(stem) >= 3 and _VOWELS.intersection(stem):
                if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                    stem = stem[:-1]  # "running" -> "run", but "called" -> "call"
                word = stem
            break
    if len(word) > 3 and word.endswith("e") and not word.endswith("ee"):
        word = word[:-1]  # "expire", "expires", "expired" all become "expir"
    return word


@lru_cache(maxsize=65536)  # bounded: a few MB in a long-running worker
def _slot(feature: str, dimensions: int) -> tuple[int, float]:
    """A feature's index and sign; blake2b, unlike hash(), is the same in every process."""
    digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
    return digest % dimensions, 1.0 if digest >> 63 else -1.0


def _features(text: str) -> dict[str, Counter[str]]:
    words = _TOKEN.findall(_APOSTROPHES.sub("", text.casefold()))
    content = [word for word in words if word not in _STOP_WORDS]
    stems = [_stem(word) for word in content]
    trigrams: Counter[str] = Counter()
    for word in content:
        marked = f"<{word}>"
        trigrams.update("t:" + marked[i : i + 3] for i in range(len(marked) - 2))
    return {
        "w": Counter("w:" + stem for stem in stems),
        "b": Counter(f"b:{a} {b}" for a, b in itertools.pairwise(stems)),
        "t": trigrams,
    }


class OfflineEmbedder:
    """Hashed word, bigram and character-trigram features; no network, no model, deterministic."""

    name = "offline-hash-v1"
    # Cheap and in-process: memories are embedded in the transaction that stores them.
    local = True

    def __init__(self, *, dimensions: int = 384) -> None:
        self.dimensions = dimensions

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self._embed_one(text) for text in texts]

    def _embed_one(self, text: str) -> list[float]:
        vector = [0.0] * self.dimensions
        for family, counts in _features(text).items():
            sparse: dict[int, float] = {}
            for feature, tf in counts.items():
                index, sign = _slot(feature, self.dimensions)
                sparse[index] = sparse.get(index, 0.0) + sign * (1.0 + math.log(tf))
            norm = math.sqrt(sum(x * x for x in sparse.values()))
            if norm == 0.0:  # no features of this family (or they cancelled out)
                continue
            # Each family gets unit length times the root of its weight, so weights are shares.
            scale = math.sqrt(_FAMILY_WEIGHTS[family]) / norm
            for index, value in sparse.items():
                vector[index] += value * scale
        return l2_normalise(vector)


# --- OpenAI-compatible endpoint ------------------------------------------------------------------


class OpenAIEmbedder:
    """The `/v1/embeddings` endpoint of any OpenAI-compatible server, through the `openai` SDK."""

    batch_size = 256
    # A network call: never made while holding locks; a job embeds what was stored.
    local = False

    def __init__(self, *, model: str, dimensions: int, base_url: str, api_key: str) -> None:
        self.model = model
        self.dimensions = dimensions
        self.name = f"openai:{model}"
        # The chat provider's cached client: one per endpoint and process, so chat and
        # embeddings share kept-alive connections and the same timeout and retry settings.
        self.client = _client(
            base_url, api_key, settings.LLM_TIMEOUT_SECONDS, settings.LLM_MAX_RETRIES
        )

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = [[0.0] * self.dimensions for _ in texts]
        # The API rejects empty strings, and blank ones have nothing to embed anyway.
        wanted = [i for i, text in enumerate(texts) if text.strip()]
        for start in range(0, len(wanted), self.batch_size):
            batch = wanted[start : start + self.batch_size]
            for i, vector in zip(batch, self._request([texts[i] for i in batch]), strict=True):
                vectors[i] = vector
        return vectors

    def _request(self, inputs: list[str]) -> list[list[float]]:
        try:
            response = self.client.embeddings.create(
                model=self.model, input=inputs, dimensions=self.dimensions
            )
        except openai.APIError as exc:
            raise EmbeddingError(f"The embedding endpoint failed: {exc}") from exc
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(inputs):
            raise EmbeddingError(
                f"The embedding endpoint returned {len(data)} vectors for {len(inputs)} texts."
            )
        for item in data:
            if len(item.embedding) != self.dimensions:
                raise EmbeddingError(
                    f"The embedding endpoint returned {len(item.embedding)} dimensions but "
                    f"MEMORY_EMBEDDING_DIMENSIONS is {self.dimensions}: {self.model!r} (or the "
                    "server) ignored the requested `dimensions`. Use a model that supports it, "
                    "such as text-embedding-3-small, or set MEMORY_EMBEDDING_DIMENSIONS to "
                    f"{len(item.embedding)} and rebuild the memory embedding column and index."
                )
        return [l2_normalise(item.embedding) for item in data]
