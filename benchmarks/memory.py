"""Benchmark: long-term memory at 100k and 1M memories: recall quality, latency, ingestion.

    ./workforce bench memory [--sizes 100000,1000000] [--queries 200] [--ef 40,100,200,400]
    .venv/bin/python benchmarks/memory.py --sizes 1000000 --repeat 2 --iterative strict_order

Generates memories from a seeded template grammar (support, IT, HR and finance sentences with
names, customers, products, ticket numbers and amounts), embedded with the project's own
OfflineEmbedder, so the vectors have the real distribution. The vectors are cached under
var/bench/ (raw float32), so a second run skips the embedding; the first 100k of the 1M set are
the 100k set. They belong to 200 employees in 20 teams: 75% private to one employee (a skewed
mix: a busy employee has ~40 times the memories of a quiet one), 25% shared by a team; 5% of the
episodes are past their expiry (not yet purged) and 2% of the document chunks are not live.
An employee sees its own and its team's memories: 1.4-4.6% of the table (median 1.4%).

Per size, on a database of its own (`aiworkforce_bench_memory` on the embedded server):

- load: binary COPY into the real `employees_memoryentry` table, which routes every row to its
  owner's partition (one per employee and per team, as in production; btree indexes in
  place), then the model's HNSW index is built, one graph per partition (maintenance_work_mem
  4GB, one parallel worker on two cores), then VACUUM ANALYZE. Skipped when the table already
  holds this data set (--reload).
- recall: --queries task-like texts, each asked by an employee, through the real recall SQL
  (`employees.memory.recall.recall_sql`, k=10: the employee's and its team's partition, each walked
  for its k nearest) with each --ef value as `hnsw.ef_search` (set for the
  session, as the connection options do in production); latency per statement, warm cache.
  The exact answer is the same statement with index scans off (the planner then filters with
  the btree indexes and sorts every visible row). recall@10 counts a returned memory as right
  when its distance is within the exact 10th distance (ties are not misses).
  --paths hnsw measures the graph walks for every query, however the planner would answer.
- the plan: EXPLAIN of the recall SQL for every query; how many walk the HNSW index.
- ingestion: the offline embedder's rate, COPY rows/s, the index build, and --remember memories
  stored one by one through the service (`memory_remember`: embed, insert into the indexed
  table, audit entry), by an employee the queries never ask as.

Targets at 1M on a 2-core machine: recall@10 >= 0.95 with p95 <= 20 ms. Latency depends
on whether table and index (about 2 GB each at 1M) sit in shared_buffers or are copied in from
the OS page cache page by page; the report prints shared_buffers next to the sizes.
"""

from __future__ import annotations

import argparse
import array
import json
import math
import multiprocessing
import os
import random
import re
import secrets
import statistics
import struct
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiworkforce.settings")

from benchmarks.databases import bench_database_url  # noqa: E402 (needs the sys.path above)

DATABASE = "aiworkforce_bench_memory"
TABLE = "employees_memoryentry"
HNSW_INDEX = "memory_embedding_hnsw_cosine"
GENERATOR = "g1"  # bump when the generator changes: it names the cache and the table marker
SEED = 5
TEAMS, EMPLOYEES_PER_TEAM = 20, 10
EMPLOYEES = TEAMS * EMPLOYEES_PER_TEAM
TEAM_SHARE = 0.25
CHUNK = 5000  # memories per generated chunk; chunk c comes from its own seeded generator
DIMENSIONS = 384
K = 10
TARGET_RECALL, TARGET_P95_MS = 0.95, 20.0


# --- the generator -------------------------------------------------------------------------


def _options(text: str) -> list[str]:
    return text.split(";")


FIRST = _options(
    "Ava;Ben;Chloe;Dev;Elena;Farid;Grace;Hiro;Ines;Jonas;Kemi;Liam;Maya;Noor;Omar;Priya;"
    "Quinn;Rosa;Sam;Tariq;Uma;Victor;Wen;Ximena;Yusuf;Zoe;Aaron;Bea;Carlos;Dana;Emil;Fatima;"
    "Gus;Hana;Ivan;Jade;Kofi;Lena;Marco;Nadia"
)
LAST = _options(
    "Adams;Baker;Chen;Diaz;Evans;Fischer;Garcia;Hughes;Ito;Jensen;Khan;Lopez;Muller;Novak;"
    "Okafor;Patel;Rossi;Silva;Tanaka;Umar;Varga;Weber;Xu;Yilmaz;Zhang;Moreau;Kowalski;Dubois"
)
CUSTOMERS = _options(
    "Acme;Globex;Initech;Umbrella;Hooli;Stark Industries;Wayne Enterprises;Soylent;Vandelay;"
    "Wonka;Cyberdyne;Tyrell;Aperture;Black Mesa;Massive Dynamic;Pied Piper;Dunder Mifflin;"
    "Oscorp;Gringotts;Monarch;Nakatomi;Virtucon;Prestige Worldwide;Blue Sun;Weyland;Zorg;"
    "Sirius Cybernetics;Bluth Company;Los Pollos;Krusty Krab;Nordwind;Helios Freight;"
    "Larkspur Clinics;Finch Legal;Quayside Hotels;Orbit Telecom;Brightwater Schools;"
    "Kestrel Bank"
)
PRODUCTS = _options(
    "Pro plan;Starter plan;Enterprise plan;VPN client;single sign-on;payroll export;"
    "invoice portal;mobile app;public API;shared drive;office printer;CRM sync;"
    "billing dashboard;webhook relay;data warehouse;laptop fleet;MFA tokens;expense tool;"
    "calendar integration;backup service;status page;SMS gateway;help centre;"
    "onboarding checklist;time tracker"
)
PROBLEMS = _options(
    "stopped syncing;timed out at login;charged twice;showed the wrong currency;"
    "lost the attachments;rejected valid passwords;sent duplicate emails;"
    "failed after the update;exported empty files;was slow all morning;locked the account;"
    "dropped the connection;refused the card;showed last month's invoice;crashed on start;"
    "ignored the time zone"
)
FIXES = _options(
    "a cache reset;rolling back the release;re-issuing the invoice;a password reset;"
    "renewing the certificate;re-linking the account;a credit note;reinstalling the client;"
    "raising the quota;clearing the queue;a manual refund;updating the DNS record;"
    "restarting the sync job"
)
DEPARTMENTS = _options(
    "finance;legal;sales;support;engineering;HR;IT;procurement;marketing;operations;security"
)
CHANNELS = _options("email;phone;Slack;the ticket portal;Teams;SMS")
TOPICS = _options(
    "refund;expense;travel;parental leave;sick leave;remote work;laptop replacement;"
    "software licence;data export;contract renewal;discount;overtime;access request;"
    "vendor onboarding;incident review;password policy;retention;on-call;purchase order;"
    "training budget"
)
ACTIONS = _options(
    "send the contract;issue a refund;share the invoice;grant admin access;"
    "promise a delivery date;offer a discount;close the ticket;email the whole team;"
    "delete the backup;change the billing address;extend the trial;publish the status update"
)
REASONS = _options(
    "the customer was not verified;legal had not reviewed it;it exceeded the approval limit;"
    "the wrong recipient was copied;finance needs a purchase order first;"
    "the data is confidential;it was a weekend;the account is in arrears;"
    "a manager must sign it off"
)
EXTRAS = _options(
    "Follow up next week.;Copy the account manager.;See the runbook.;Marked urgent.;"
    "Customer was happy with the outcome.;Escalated once before.;Check the SLA first.;"
    "Noted in the CRM.;Applies to all regions.;Confirmed by phone.;Ask before repeating.;"
    "Reviewed in the weekly meeting.;Same as last quarter.;Only for EU customers.;"
    "Their fiscal year ends in March.;Prefers short answers.;Keep the tone formal."
)

TEMPLATES = {
    "fact": (
        "{customer} is on the {product} and renews on {date}; their contact is {person} ({email}).",
        "{person} in {department} prefers {channel} and answers within {n2} hours.",
        "{customer} pays invoices net {n2} by bank transfer; PO numbers start with {code}.",
        "The {product} for {customer} is limited to {n3} seats under contract {code}.",
        "{person} approves {topic} requests for {department} up to ${amount}.",
        "{customer} has {n2} open tickets about the {product}; account owner is {person}.",
    ),
    "episode": (
        "Ticket #{ticket}: {person} at {customer} reported that the {product} {problem}; "
        "fixed by {fix} in {n2} minutes.",
        "On {date} {customer} asked about a {topic} of ${amount}; {person} approved it.",
        "Handled {topic} request #{ticket} for {person} ({department}); sent by {channel}.",
        "Call with {person} from {customer}: the {product} {problem} again, offered {fix}.",
        "Incident {code}: the {product} {problem} for {n3} users; resolved by {fix}.",
    ),
    "lesson": (
        "Do not {action} for {customer} without approval from {person}: rejected on {date} "
        "because {reason}.",
        "When {customer} writes about the {product}, copy {person}; last time {reason}.",
        "Never {action} by {channel}: {person} rejected it because {reason}.",
        "For {topic} questions ask {department} first; {person} corrected this on {date}.",
    ),
    "document": (
        "Policy {code} section {n1}: {topic} requests over ${amount} need {department} sign-off "
        "within {n1} business days.",
        "Runbook for the {product}: if it {problem}, try {fix}, then page {department} on-call.",
        "Handbook {code}: employees may claim {topic} costs up to ${amount} per {period}.",
        "FAQ: the {product} supports {n2} regions; {topic} questions go to {department}.",
    ),
}
QUERY_TEMPLATES = (
    "Customer {person} from {customer} says the {product} {problem}. What should we do?",
    "Reply to {customer}: they ask about a {topic} of ${amount} for the {product}.",
    "{person} in {department} asks who approves {topic} requests.",
    "Ticket #{ticket}: {customer} cannot use the {product}, it {problem}.",
    "Prepare the renewal of the {product} for {customer}.",
    "Can we {action} for {customer}? {person} is asking.",
    "Draft the {topic} policy answer for {person} in {department}.",
    "{customer} wants {fix} after the {product} {problem}.",
)


def _fill(template: str, rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    values = {
        "person": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}@example.com",
        "customer": rng.choice(CUSTOMERS),
        "product": rng.choice(PRODUCTS),
        "problem": rng.choice(PROBLEMS),
        "fix": rng.choice(FIXES),
        "department": rng.choice(DEPARTMENTS),
        "channel": rng.choice(CHANNELS),
        "topic": rng.choice(TOPICS),
        "action": rng.choice(ACTIONS),
        "reason": rng.choice(REASONS),
        "period": rng.choice(("day", "trip", "month", "quarter")),
        "date": f"{rng.randint(1, 28)} {rng.choice(('Jan', 'Mar', 'May', 'Jul', 'Sep', 'Nov'))}",
        "code": f"{rng.choice('ABCDEFGHKLMPRSTX')}{rng.choice('ABCDEFGHKLMPRSTX')}-{rng.randint(100, 999)}",
        "ticket": str(rng.randint(10_000, 99_999)),
        "amount": f"{rng.choice((50, 75, 120, 250, 400, 500, 750, 1000, 2500, 5000)):,}",
        "n1": str(rng.randint(1, 9)),
        "n2": str(rng.randint(2, 60)),
        "n3": str(rng.randint(10, 900)),
    }
    return template.format(**values)


def _owner_weights() -> list[float]:
    """A skewed mix: employee of rank r gets weight 1/(r+1)^0.7, ranks shuffled over teams."""
    ranks = list(range(EMPLOYEES))
    random.Random(f"owners:{SEED}").shuffle(ranks)  # noqa: S311 - test data
    return [1 / (rank + 1) ** 0.7 for rank in ranks]


def chunk_rows(chunk: int) -> list[tuple]:
    """Chunk `chunk` of the data set: (employee index or None, team index, kind, text, live,
    expires in days or None, age in days, pinned) per memory; the same in every process."""
    rng = random.Random(f"memory-bench:{GENERATOR}:{SEED}:{chunk}")  # noqa: S311
    weights = _owner_weights()
    employees = rng.choices(range(EMPLOYEES), weights=weights, k=CHUNK)
    rows = []
    for n in range(CHUNK):
        if rng.random() < TEAM_SHARE:
            employee, team = None, rng.randrange(TEAMS)
            kind = rng.choices(("document", "fact", "lesson"), (50, 35, 15))[0]
        else:
            employee = employees[n]
            team = employee // EMPLOYEES_PER_TEAM
            kind = rng.choices(("episode", "fact", "lesson"), (50, 35, 15))[0]
        text = _fill(rng.choice(TEMPLATES[kind]), rng)
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            text += " " + rng.choice(EXTRAS)
        live, expires, pinned = True, None, False
        if kind == "episode":
            expires = rng.uniform(-5, 0) if rng.random() < 0.05 else rng.uniform(1, 90)
        elif kind == "document":
            live = rng.random() >= 0.02
        else:
            pinned = rng.random() < 0.1
        rows.append((employee, team, kind, text, live, expires, rng.uniform(0, 365), pinned))
    return rows


def queries(count: int) -> list[tuple[int, str]]:
    """(asking employee index, task text): every employee alike, so quiet ones are asked too."""
    rng = random.Random(f"memory-bench-queries:{SEED}")  # noqa: S311
    return [
        (rng.randrange(EMPLOYEES), _fill(rng.choice(QUERY_TEMPLATES), rng)) for _ in range(count)
    ]


def _embed_chunk(chunk: int) -> bytes:
    from employees.memory.embeddings import OfflineEmbedder

    embedder = OfflineEmbedder(dimensions=DIMENSIONS)
    vectors = array.array("f")
    for vector in embedder.embed([row[3] for row in chunk_rows(chunk)]):
        vectors.extend(vector)
    return vectors.tobytes()


# --- the vector cache ----------------------------------------------------------------------


def cache_path() -> Path:
    from aiworkforce.embedded_db import VAR_DIR

    return VAR_DIR / "bench" / f"memory-{GENERATOR}-seed{SEED}-offline-hash-v1-d{DIMENSIONS}.f32"


def ensure_vectors(rows: int, processes: int) -> dict:
    """Embed (in `processes` processes) and cache the vectors of the first `rows` memories."""
    from django.db import connections

    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    row_bytes = DIMENSIONS * 4
    chunk_bytes = CHUNK * row_bytes
    have = path.stat().st_size // chunk_bytes if path.exists() else 0
    with path.open("ab") as file:
        file.truncate(have * chunk_bytes)  # a partial chunk from an interrupted run
    wanted = math.ceil(rows / CHUNK)
    if have >= wanted:
        print(f"vectors: {rows:,} cached in {path}")
        return {}
    print(f"embedding {(wanted - have) * CHUNK:,} memories in {processes} processes ...")
    connections.close_all()  # forked children must not share the parent's connection
    started = time.perf_counter()
    with (
        multiprocessing.get_context("fork").Pool(processes) as pool,
        path.open("ab") as file,
    ):
        for done, data in enumerate(pool.imap(_embed_chunk, range(have, wanted)), start=1):
            file.write(data)
            if done % 20 == 0 or have + done == wanted:
                seconds = time.perf_counter() - started
                print(f"  {(have + done) * CHUNK:9,} / {wanted * CHUNK:,}  ({seconds:5.0f} s)")
    seconds = time.perf_counter() - started
    return {"embedded": (wanted - have) * CHUNK, "seconds": seconds, "processes": processes}


def read_vectors(start_chunk: int, chunks: int) -> array.array:
    vectors = array.array("f")
    with cache_path().open("rb") as file:
        file.seek(start_chunk * CHUNK * DIMENSIONS * 4)
        vectors.frombytes(file.read(chunks * CHUNK * DIMENSIONS * 4))
    return vectors


def embed_rate(sample: int = 5000) -> float:
    """Texts per second of the offline embedder in this process (fresh texts, cold caches)."""
    from employees.memory.embeddings import OfflineEmbedder, _slot, _stem

    _slot.cache_clear()
    _stem.cache_clear()
    texts = [row[3] for row in chunk_rows(10_000_000)[:sample]]  # a chunk no data set uses
    started = time.perf_counter()
    OfflineEmbedder(dimensions=DIMENSIONS).embed(texts)
    return sample / (time.perf_counter() - started)


# --- setup ---------------------------------------------------------------------------------


def setup_django() -> None:
    """Deployed settings (DEBUG off) on a database of our own."""
    import django

    os.environ["OPENAI_API_KEY"] = ""  # the offline embedder
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DEBUG"] = "false"  # Django's debug cursor wrapper costs CPU per statement
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = bench_database_url(DATABASE)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def owners() -> tuple[list, list, object]:
    """The 200 employees and 20 teams (created once), and the employee `--remember` stores as."""
    from django.db import transaction
    from django.utils import timezone

    from employees.models import Employee, EmployeeStatus, Team

    def employee(n: int, team, handle: str) -> Employee:
        return Employee(
            name=f"Memory bench {n:03d}",
            handle=handle,
            team=team,
            role_title="Support specialist",
            job_description="Remembers things (memory benchmark).",
            status=EmployeeStatus.ACTIVE,
            hired_at=timezone.now(),
        )

    if not Team.objects.filter(name="Memory bench ingest").exists():
        with transaction.atomic():
            teams = Team.objects.bulk_create(
                [Team(name=f"Memory bench {n:02d}") for n in range(TEAMS)]
            )
            Employee.objects.bulk_create(
                [
                    employee(n, teams[n // EMPLOYEES_PER_TEAM], f"memory-bench-{n:03d}")
                    for n in range(EMPLOYEES)
                ]
            )
            ingest = Team.objects.create(name="Memory bench ingest")
            employee(EMPLOYEES, ingest, "memory-bench-ingest").save()
    teams = list(
        Team.objects.filter(name__startswith="Memory bench ")
        .exclude(name="Memory bench ingest")
        .order_by("name")
    )
    employees = list(
        Employee.objects.filter(handle__startswith="memory-bench-")
        .exclude(handle="memory-bench-ingest")
        .order_by("handle")
    )
    assert len(teams) == TEAMS and len(employees) == EMPLOYEES
    return employees, teams, Employee.objects.get(handle="memory-bench-ingest")


# --- loading -------------------------------------------------------------------------------

_COLUMNS = (
    "scope, employee_id, team_id, kind, text, embedding, embedder, source, details, live, "
    "pinned, expires_at, created_at, updated_at"
)
_NULL = b"\xff\xff\xff\xff"
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_DAY_US = 86_400_000_000


def _field(value: bytes) -> bytes:
    return struct.pack(">i", len(value)) + value


def _copy_chunk(rows: list[tuple], vectors: array.array, employee_ids, team_ids, now_us) -> bytes:
    """Rows in PostgreSQL's binary COPY format (pgvector's binary vector: dims, 0, big-endian
    float4s)."""
    vectors = array.array("f", vectors)
    if sys.byteorder == "little":
        vectors.byteswap()
    raw = memoryview(vectors.tobytes())
    width = DIMENSIONS * 4
    vector_head = struct.pack(">iHH", 4 + width, DIMENSIONS, 0)
    employee_scope, team_scope = _field(b"employee"), _field(b"team")
    embedder, source = _field(b"offline-hash-v1"), _field(b"memory benchmark")
    details = _field(b"\x01{}")
    true, false = _field(b"\x01"), _field(b"\x00")
    int8 = struct.Struct(">iq")
    out = []
    for n, (employee, team, kind, text, live, expires, age, pinned) in enumerate(rows):
        created = now_us - int(age * _DAY_US)
        out += [
            b"\x00\x0e",
            employee_scope if employee is not None else team_scope,
            int8.pack(8, employee_ids[employee]) if employee is not None else _NULL,
            int8.pack(8, team_ids[team]) if employee is None else _NULL,
            _field(kind.encode()),
            _field(text.encode()),
            vector_head,
            raw[n * width : (n + 1) * width].tobytes(),
            embedder,
            source,
            details,
            true if live else false,
            true if pinned else false,
            int8.pack(8, now_us + int(expires * _DAY_US)) if expires is not None else _NULL,
            int8.pack(8, created),
            int8.pack(8, created),
        ]
    return b"".join(out)


def _marker(rows: int) -> str:
    return f"memory benchmark: {rows} memories, generator {GENERATOR}, seed {SEED}"


def _hnsw_index():
    from employees.models import MemoryEntry

    return next(i for i in MemoryEntry._meta.indexes if i.name == HNSW_INDEX)


def load(rows: int, employees, teams, *, reload: bool, workers: int) -> dict | None:
    """The data set in the memory table with its HNSW index (None: it was there already)."""
    from django.db import connection
    from django.utils import timezone

    from employees.models import MemoryEntry

    with connection.cursor() as cursor:
        cursor.execute("SELECT obj_description(%s::regclass, 'pg_class')", [TABLE])
        marker = cursor.fetchone()[0]
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s",
            [HNSW_INDEX],
        )
        index = cursor.fetchone()
    if marker == _marker(rows) and index and index[0] and not reload:
        print(f"table: already holds the {rows:,} memories (--reload to load them again)")
        return None
    figures: dict = {}
    print(f"loading {rows:,} memories with COPY ...")
    with connection.cursor() as cursor:
        cursor.execute(f"COMMENT ON TABLE {TABLE} IS NULL")
        cursor.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")
        cursor.execute(f"TRUNCATE {TABLE} RESTART IDENTITY")
    employee_ids = [e.pk for e in employees]
    team_ids = [t.pk for t in teams]
    now_us = int((timezone.now() - _PG_EPOCH).total_seconds() * 1_000_000)
    chunks = math.ceil(rows / CHUNK)
    started = time.perf_counter()
    encode = 0.0
    raw = connection.connection
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {TABLE} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.write(b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8)
        for first in range(0, chunks, 20):
            count = min(20, chunks - first)
            vectors = read_vectors(first, count)
            for c in range(first, first + count):
                wanted = min(CHUNK, rows - c * CHUNK)
                offset = (c - first) * CHUNK * DIMENSIONS
                t = time.perf_counter()
                data = _copy_chunk(
                    chunk_rows(c)[:wanted],
                    vectors[offset : offset + wanted * DIMENSIONS],
                    employee_ids,
                    team_ids,
                    now_us,
                )
                encode += time.perf_counter() - t
                copy.write(data)
        copy.write(b"\xff\xff")
    figures["copy_seconds"] = time.perf_counter() - started
    figures["encode_seconds"] = encode
    print(
        f"  COPY: {figures['copy_seconds']:.1f} s ({rows / figures['copy_seconds']:,.0f} rows/s, "
        f"{encode:.1f} s of it generating and encoding rows in Python)"
    )

    notices: list[str] = []
    raw.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '4GB'")
        cursor.execute("SET max_parallel_maintenance_workers = %s", [workers])
    print(f"building the HNSW index ({workers} parallel worker(s) + the leader) ...")
    started = time.perf_counter()
    with connection.schema_editor() as editor:
        editor.add_index(MemoryEntry, _hnsw_index())
    figures["build_seconds"] = time.perf_counter() - started
    figures["build_notices"] = notices
    figures["build_workers"] = workers
    print(f"  built in {figures['build_seconds']:.1f} s {'; '.join(notices)}")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute("RESET max_parallel_maintenance_workers")
        cursor.execute(f"VACUUM (ANALYZE) {TABLE}")
        cursor.execute(f"COMMENT ON TABLE {TABLE} IS %s", [_marker(rows)])
    figures["vacuum_seconds"] = time.perf_counter() - started
    print(f"  VACUUM ANALYZE: {figures['vacuum_seconds']:.1f} s")
    return figures


def table_sizes() -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        # A partitioned table and index have no storage of their own: sum their partitions.
        cursor.execute(
            "SELECT pg_size_pretty((SELECT sum(pg_table_size(relid)) "
            "                       FROM pg_partition_tree(%s) WHERE isleaf)), "
            "       pg_size_pretty((SELECT sum(pg_relation_size(relid)) "
            "                       FROM pg_partition_tree(%s) WHERE isleaf)), "
            "       (SELECT count(*) FROM pg_partition_tree(%s) WHERE isleaf), "
            "       current_setting('shared_buffers')",
            [TABLE, HNSW_INDEX, TABLE],
        )
        table, index, partitions, buffers = cursor.fetchone()
    return {"table": table, "index": index, "partitions": partitions, "shared_buffers": buffers}


# --- measuring -----------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def prepare_queries(count: int, employees) -> list[dict]:
    from employees.memory.embeddings import OfflineEmbedder
    from employees.memory.vectors import vector_literal

    embedder = OfflineEmbedder(dimensions=DIMENSIONS)
    asked = queries(count)
    vectors = embedder.embed([text for _, text in asked])
    return [
        {
            "employee": employees[n],
            "text": text,
            "params": {
                "query": vector_literal(vector),
                "employee": employees[n].pk,
                "team": employees[n].team_id,
                "k": K,
                "kinds": None,
            },
        }
        for (n, text), vector in zip(asked, vectors, strict=True)
    ]


def visible_fractions(prepared: list[dict]) -> list[float]:
    """Per query, the share of the table its employee may recall (live, not expired)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE}")  # noqa: S608 - a constant
        total = cursor.fetchone()[0]
        cursor.execute(
            f"SELECT scope, coalesce(employee_id, team_id), count(*) FROM {TABLE} "  # noqa: S608
            "WHERE live AND (expires_at IS NULL OR expires_at > now()) GROUP BY 1, 2"
        )
        counts = {(scope, owner): n for scope, owner, n in cursor.fetchall()}
    return [
        (
            counts.get(("employee", q["params"]["employee"]), 0)
            + counts.get(("team", q["params"]["team"]), 0)
        )
        / total
        for q in prepared
    ]


def set_session(cursor, *, ef_search: int, iterative: str, max_scan_tuples: int | None) -> None:
    cursor.execute("SELECT set_config('hnsw.ef_search', %s, false)", [str(ef_search)])
    cursor.execute("SELECT set_config('hnsw.iterative_scan', %s, false)", [iterative])
    if max_scan_tuples:
        cursor.execute(
            "SELECT set_config('hnsw.max_scan_tuples', %s, false)", [str(max_scan_tuples)]
        )
    else:
        cursor.execute("RESET hnsw.max_scan_tuples")


def run_recall(prepared: list[dict], sql: str) -> tuple[list[list[tuple]], list[float]]:
    """Each query once, timed: (rows of (id, distance) per query, milliseconds per query)."""
    from django.db import connection

    results, times = [], []
    with connection.cursor() as cursor:
        for q in prepared:
            started = time.perf_counter()
            cursor.execute(sql, q["params"])
            rows = cursor.fetchall()
            times.append((time.perf_counter() - started) * 1000)
            results.append([(r[0], r[5]) for r in rows])
    return results, times


def exact(prepared: list[dict], sql: str) -> tuple[list[list[tuple]], list[float]]:
    """The true answers: the same statement with index scans off (no HNSW), timed warm."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET enable_indexscan = off")
        try:
            cursor.execute("EXPLAIN " + sql, prepared[0]["params"])
            plan = "\n".join(r[0] for r in cursor.fetchall())
            assert not walks_hnsw(plan), plan
            run_recall(prepared, sql)
            return run_recall(prepared, sql)
        finally:
            cursor.execute("RESET enable_indexscan")


def walks_hnsw(plan: str) -> bool:
    """Whether the plan walks a partition's HNSW graph (the partitioned index's children are
    named after their partition: employees_memoryentry_e12_embedding_idx)."""
    return "_embedding_idx" in plan


def force_hnsw(cursor, on: bool) -> None:
    """Price out the scans and sorts of a partition's rows, so every query walks the graphs."""
    for setting in ("enable_bitmapscan", "enable_seqscan", "enable_sort"):
        cursor.execute(f"SET {setting} = off" if on else f"RESET {setting}")


def recall_at_k(found: list[list[tuple]], truth: list[list[tuple]]) -> tuple[float, int]:
    """Mean recall@k (a result within the exact k-th distance counts), and short answers."""
    scores, short = [], 0
    for got, want in zip(found, truth, strict=True):
        if not want:
            continue
        kth = want[-1][1] + 1e-6
        scores.append(sum(1 for _, distance in got if distance <= kth) / len(want))
        short += len(got) < len(want)
    return statistics.mean(scores), short


def plans(prepared: list[dict], sql: str) -> tuple[int, str]:
    """How many queries the planner answers with the HNSW index; one plan, analysed."""
    from django.db import connection

    using = 0
    with connection.cursor() as cursor:
        for q in prepared:
            cursor.execute("EXPLAIN " + sql, q["params"])
            using += walks_hnsw("\n".join(r[0] for r in cursor.fetchall()))
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, prepared[0]["params"])
        plan = "\n".join(r[0] for r in cursor.fetchall())
    return using, plan


def measure(prepared, args, ef_values: list[int]) -> dict:
    from django.db import connection

    from employees.memory.recall import recall_sql

    sql = recall_sql()
    figures: dict = {"load": os.getloadavg(), "rows": []}
    truth, figures["exact_ms"] = exact(prepared, sql)
    for path in args.paths.split(","):
        for ef in ef_values:
            with connection.cursor() as cursor:
                set_session(
                    cursor,
                    ef_search=ef,
                    iterative=args.iterative,
                    max_scan_tuples=args.max_scan_tuples,
                )
                force_hnsw(cursor, path == "hnsw")
            run_recall(prepared, sql)  # warm up: the pages this ef_search visits
            found, times = run_recall(prepared, sql)
            recall, short = recall_at_k(found, truth)
            row = {
                "path": path,
                "ef": ef,
                "recall": recall,
                "p50": percentile(times, 50),
                "p95": percentile(times, 95),
                "short": short,
            }
            figures["rows"].append(row)
            print(
                f"  {path:>7} ef_search {ef:4}: recall@{K} {recall:.3f}   p50 {row['p50']:6.2f} ms"
                f"   p95 {row['p95']:6.2f} ms   short answers {short}"
            )
    with connection.cursor() as cursor:
        force_hnsw(cursor, False)
        chosen = _chosen([r for r in figures["rows"] if r["path"] == "planner"])
        set_session(
            cursor,
            ef_search=chosen["ef"] if chosen else ef_values[-1],
            iterative=args.iterative,
            max_scan_tuples=args.max_scan_tuples,
        )
    figures["hnsw_plans"], figures["plan"] = plans(prepared, sql)
    figures["load_after"] = os.getloadavg()
    return figures


def _chosen(rows: list[dict]) -> dict | None:
    """The smallest ef_search meeting both targets."""
    return next(
        (r for r in rows if r["recall"] >= TARGET_RECALL and r["p95"] <= TARGET_P95_MS), None
    )


def recall_end_to_end(prepared: list[dict]) -> list[float]:
    """memory_recall() as the loop calls it (embed the task, then the SQL), settings' ef_search."""
    from django.db import connection

    from employees.memory.recall import memory_recall

    connection.close()  # a fresh connection: the deployment's options, not our SETs
    for q in prepared[:20]:
        memory_recall(employee=q["employee"], query=q["text"], k=K)
    times = []
    for q in prepared:
        started = time.perf_counter()
        memory_recall(employee=q["employee"], query=q["text"], k=K)
        times.append((time.perf_counter() - started) * 1000)
    return times


def remember(count: int, employee) -> float:
    """Memories per second stored one by one through the service, as the remember tool does."""
    from django.db import connection

    from aiworkforce.audit import Actor
    from employees.memory.services import memory_remember
    from employees.models import MemoryEntry

    # The last run's sample: gone, so the table holds the data set plus this run's sample only.
    MemoryEntry.objects.filter(employee=employee).delete()
    texts = [row[3] for row in chunk_rows(10_000_001)[:count]]
    actor = Actor.system("benchmark")
    started = time.perf_counter()
    for text in texts:
        memory_remember(kind="fact", text=text, actor=actor, employee=employee)
    seconds = time.perf_counter() - started
    connection.close()
    return count / seconds


# --- report --------------------------------------------------------------------------------


def report(size: int, result: dict, args) -> None:
    print(f"\n== {size:,} memories ({EMPLOYEES} employees in {TEAMS} teams) ==")
    sizes = result["sizes"]
    print(
        f"  table {sizes['table']} in {sizes['partitions']} partitions, HNSW graphs {sizes['index']} "
        f"(shared_buffers {sizes['shared_buffers']}; the rest from the OS page cache)"
    )
    fractions = sorted(result["visible"])
    print(
        f"  visible to the asking employee: median {statistics.median(fractions):.2%} of the "
        f"table (min {fractions[0]:.2%}, max {fractions[-1]:.2%})"
    )
    loaded = result.get("loaded")
    if loaded:
        print(
            f"  bulk load: COPY {loaded['copy_seconds']:.1f} s "
            f"({size / loaded['copy_seconds']:,.0f} rows/s); HNSW build "
            f"{loaded['build_seconds']:.1f} s (m=16, ef_construction=64, maintenance_work_mem "
            f"4GB, {loaded['build_workers']} parallel worker + leader); VACUUM ANALYZE "
            f"{loaded['vacuum_seconds']:.1f} s"
        )
    else:
        print("  bulk load: skipped (table already loaded; --reload to measure it)")
    print(f"  offline embedder: {result['embed_rate']:,.0f} texts/s in one process")
    if result.get("remember") is not None:
        print(
            f"  memory_remember(): {result['remember']:,.0f} memories/s "
            f"(one by one: embed, insert, HNSW insert, audit entry; {args.remember} memories)"
        )
    for n, run in enumerate(result["runs"], start=1):
        load_before = " ".join(f"{x:.2f}" for x in run["load"])
        load_after = " ".join(f"{x:.2f}" for x in run["load_after"])
        print(
            f"\n  run {n}: iterative_scan={args.iterative}"
            f"{f', max_scan_tuples={args.max_scan_tuples}' if args.max_scan_tuples else ''}; "
            f"load average {load_before} before, {load_after} after"
        )
        print(
            f"  exact (no index): p50 {percentile(run['exact_ms'], 50):.1f} ms, "
            f"p95 {percentile(run['exact_ms'], 95):.1f} ms"
        )
        print(f"  HNSW index used by {run['hnsw_plans']} of {len(result['visible'])} query plans")
        at_target = size >= 1_000_000
        print(
            f"  {'path':>7} {'ef_search':>9} {'recall@10':>9} {'p50 ms':>7} {'p95 ms':>7} "
            f"{'short':>5}"
        )
        for row in run["rows"]:
            verdict = ""
            if at_target:
                missed = [
                    what
                    for what, ok in (
                        ("recall", row["recall"] >= TARGET_RECALL),
                        ("p95", row["p95"] <= TARGET_P95_MS),
                    )
                    if not ok
                ]
                verdict = "PASS" if not missed else "FAIL (" + ", ".join(missed) + ")"
            print(
                f"  {row['path']:>7} {row['ef']:>9} {row['recall']:>9.3f} {row['p50']:>7.2f} {row['p95']:>7.2f} "
                f"{row['short']:>5}  {verdict}"
            )
        chosen = _chosen([r for r in run["rows"] if r["path"] == "planner"])
        if at_target:
            print(
                f"  targets (recall@10 >= {TARGET_RECALL}, p95 <= {TARGET_P95_MS:g} ms): "
                + (f"met from ef_search {chosen['ef']}" if chosen else "NOT met")
            )
    if result.get("end_to_end"):
        times = result["end_to_end"]
        print(
            f"\n  memory_recall() end to end (embed the task + SQL, settings' ef_search): "
            f"p50 {percentile(times, 50):.2f} ms, p95 {percentile(times, 95):.2f} ms"
        )
    plan = result["runs"][-1]["plan"]
    print("\n  plan of the first query (EXPLAIN ANALYZE, BUFFERS):")
    for line in plan.splitlines():
        print("    " + re.sub(r"'\[[^\]]*\]'::vector", "'[...]'::vector", line))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="memories, comma-separated")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", default="40,100,200,400", help="hnsw.ef_search values")
    parser.add_argument(
        "--iterative", default="relaxed_order", choices=("relaxed_order", "strict_order", "off")
    )
    parser.add_argument("--max-scan-tuples", type=int, default=None)
    parser.add_argument(
        "--paths",
        default="planner,hnsw",
        help="planner: the planner's choice; hnsw: btree and sequential paths priced out",
    )
    parser.add_argument("--repeat", type=int, default=1, help="measurements per size")
    parser.add_argument("--remember", type=int, default=2000, help="memory_remember() calls")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--build-workers", type=int, default=max(0, (os.cpu_count() or 1) - 1))
    parser.add_argument("--reload", action="store_true", help="COPY and build even if loaded")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    ef_values = [int(s) for s in args.ef.split(",")]
    for size in sizes:
        if size % CHUNK:
            parser.error(f"sizes must be multiples of {CHUNK}")

    setup_django()
    employees, teams, ingest = owners()
    embedded = ensure_vectors(max(sizes), args.processes)
    if embedded:
        print(
            f"  {embedded['embedded'] / embedded['seconds']:,.0f} memories/s embedded in "
            f"{embedded['processes']} processes (generation included)"
        )
    prepared = prepare_queries(args.queries, employees)
    results = {}
    for size in sizes:
        print(f"\n--- {size:,} memories ---")
        result: dict = {
            "loaded": load(size, employees, teams, reload=args.reload, workers=args.build_workers),
            "embed_rate": embed_rate(),
        }
        result["sizes"] = table_sizes()
        result["visible"] = visible_fractions(prepared)
        result["runs"] = []
        for n in range(args.repeat):
            print(f"measuring recall, run {n + 1} of {args.repeat} ...")
            result["runs"].append(measure(prepared, args, ef_values))
        result["end_to_end"] = recall_end_to_end(prepared)
        result["remember"] = remember(args.remember, ingest) if args.remember else None
        results[size] = result
        report(size, result, args)
    print("\n== summary ==")
    for size, result in results.items():
        for n, run in enumerate(result["runs"], start=1):
            for path in args.paths.split(","):
                cells = "  ".join(
                    f"ef {r['ef']}: {r['recall']:.3f} / {r['p95']:.1f} ms"
                    for r in run["rows"]
                    if r["path"] == path
                )
                print(f"  {size:>9,} run {n} {path:>7}: recall@10 / p95   {cells}")
    print(json.dumps({"load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
