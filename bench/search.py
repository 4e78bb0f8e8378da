"""Benchmark: searching and listing 100,000 incidents on PostgreSQL.

Target: p99 under 100 ms for each kind of text query at 100,000 incidents, served as
the API serves `GET /v1/incidents` (`service.documentation.incidents.list_incidents` with
`catalogue.Filters` and `Paging`, 50 per page: one session and transaction per
request, through the runtime's connection pool). Measured with the tables in cache,
as on a server that has been running.

The first `--real` incidents are created through the real `create_incident` (custody
append, version, `catalogue.reindex`); the rest are bulk-loaded with COPY
(`_bulk_incidents.py`), with the same derived rows, which is checked against the real
ones. EXPLAIN ANALYZE of one request of each kind shows that the text matches are
found once per request, not tested per incident.

    .venv/bin/python bench/search.py [--incidents 100000] [--requests 300] [--real 100]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _bulk_incidents import Owner, bulk_load, rows_differ
from _corpus import CITIES, EVENTS, PEOPLE, SYRIA_BBOX, TARGETS, bare, document
from _locker import scratch_database
from _report import Row, percentile, print_context, print_table
from sqlalchemy import event, text

from service.accounts.members import Principal, bootstrap
from service.accounts.permissions import Role
from service.documentation.documents import IncidentDocument
from service.documentation.incidents import create_incident, list_incidents
from service.documentation.vocabulary import DEFAULT_CATEGORIES
from service.runtime import Runtime, open_runtime
from service.search.catalogue import BoundingBox, Filters, Paging, encode_cursor
from service.settings import Settings

_TARGET_MS = 100.0
_WARM_UP = 20
_PAGE = 50
_OTHER_SHARE = 0.2  # of the incidents belong to another organisation

Query = Callable[[random.Random], tuple[Filters, Paging]]

_ARABIC = [w for words in (EVENTS, TARGETS, PEOPLE, CITIES) for a, *_ in words for w in a.split()]
_ENGLISH = [
    w.lower()
    for words in (EVENTS, TARGETS, PEOPLE, CITIES)
    for _, e, *_ in words
    for w in e.split()
    if w not in ("an", "the", "a")
]


def _arabic_word(rng: random.Random) -> str:
    """A word as an investigator might type it: with or without tashkeel and article."""
    word = rng.choice(_ARABIC)
    word = word if rng.random() < 0.3 else bare(word)
    if rng.random() < 0.3 and not bare(word).startswith("ال"):
        word = rng.choice(("ال", "وال", "بال")) + word
    return word


def _one_arabic(rng: random.Random) -> tuple[Filters, Paging]:
    return Filters(q=_arabic_word(rng)), Paging(limit=_PAGE)


def _two_arabic(rng: random.Random) -> tuple[Filters, Paging]:
    return Filters(q=f"{_arabic_word(rng)} {_arabic_word(rng)}"), Paging(limit=_PAGE)


def _english(rng: random.Random) -> tuple[Filters, Paging]:
    word = rng.choice(_ENGLISH)
    return Filters(q=word + "s" if rng.random() < 0.3 else word), Paging(limit=_PAGE)


def _text_category_bbox(rng: random.Random) -> tuple[Filters, Paging]:
    filters = Filters(
        q=_arabic_word(rng),
        category=rng.choice(DEFAULT_CATEGORIES[:8]),
        bbox=BoundingBox.parse(SYRIA_BBOX),
    )
    return filters, Paging(limit=_PAGE)


def _deep_listing(first: int, last: int) -> Query:
    def query(rng: random.Random) -> tuple[Filters, Paging]:
        filters = Filters(category=rng.choice(DEFAULT_CATEGORIES[:8]), status="open")
        deep = first + int((last - first) * rng.uniform(0.5, 0.95))
        return filters, Paging(limit=_PAGE, cursor=encode_cursor(deep))

    return query


def _timed(
    runtime: Runtime, principal: Principal, requests: list[tuple[Filters, Paging]]
) -> tuple[list[float], list[int]]:
    """Milliseconds and items returned per request, after untimed warm-up requests."""
    for filters, paging in requests[:_WARM_UP]:
        list_incidents(runtime, principal, filters, paging)
    timings, counts = [], []
    for filters, paging in requests[_WARM_UP:]:
        started = time.perf_counter()
        page = list_incidents(runtime, principal, filters, paging)
        timings.append((time.perf_counter() - started) * 1000)
        counts.append(len(page.items))
    return timings, counts


def _explain(runtime: Runtime, principal: Principal, filters: Filters, paging: Paging) -> str:
    """EXPLAIN ANALYZE of the statement `list_incidents` sends for this request."""
    sent: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        sent.append((args[2], args[3]))  # (connection, cursor, statement, parameters, …)

    event.listen(runtime.database.engine, "before_cursor_execute", capture)
    try:
        list_incidents(runtime, principal, filters, paging)
    finally:
        event.remove(runtime.database.engine, "before_cursor_execute", capture)
    statement, parameters = next(s for s in reversed(sent) if "FROM incident" in s[0])
    with runtime.database.engine.connect() as connection:
        plan = connection.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
        return "\n".join(row[0] for row in plan)


def _owners(runtime: Runtime) -> tuple[Principal, Owner, Owner]:
    """Two organisations; the benchmark searches as the first one's admin."""
    ours = bootstrap(runtime, organisation="Benchmark Project", email="bench@example.org")
    other = bootstrap(runtime, organisation="Other Project", email="other@example.org")
    principal = Principal(
        user_id=ours.user_id, organisation_id=ours.organisation_id, role=Role.ADMIN
    )
    return (
        principal,
        Owner(ours.organisation_id, ours.user_id),
        Owner(other.organisation_id, other.user_id),
    )


def _load(runtime: Runtime, url: str, args: argparse.Namespace) -> tuple[Principal, list[str], int]:
    """Real incidents, then the bulk; (principal, load problems, first bulk position)."""
    rng = random.Random(1948)
    principal, ours, other = _owners(runtime)
    started = time.perf_counter()
    real: list[tuple[str, IncidentDocument]] = []
    for _ in range(args.real):
        record = document(rng)
        real.append((create_incident(runtime, principal, record).id, record))
    seconds = time.perf_counter() - started
    print(f"created {args.real} incidents through create_incident in {seconds:.1f} s")
    with runtime.database.session() as session:
        first = int(session.execute(text("SELECT size FROM log_head WHERE id = 1")).scalar_one())

    def records() -> Iterator[tuple[Owner, IncidentDocument]]:
        for _ in range(args.incidents - args.real):
            yield (other if rng.random() < _OTHER_SHARE else ours), document(rng)

    count, seconds = bulk_load(
        url,
        records(),
        first_position=first,
        progress=lambda n: print(f"  {n} generated", flush=True),
    )
    print(f"bulk-loaded {count} incidents in {seconds:.1f} s")
    problems = [p for incident_id, record in real for p in rows_differ(url, incident_id, record)]
    return principal, problems, first


def _latency_rows(name: str, timings: list[float], counts: list[int], *, target: bool) -> list[Row]:
    p99 = percentile(timings, 0.99)
    full = sum(1 for c in counts if c == _PAGE) / len(counts)
    spread = (
        f"median {statistics.median(timings):.1f}, p95 {percentile(timings, 0.95):.1f}, "
        f"max {max(timings):.1f}; {full:.0%} full pages"
    )
    return [
        Row(label=f"{name}: {len(timings)} requests, ms", value=spread),
        Row(
            label=f"{name}: p99",
            value=f"{p99:.1f} ms",
            target=f"< {_TARGET_MS:.0f} ms" if target else "",
            met=p99 < _TARGET_MS if target else None,
        ),
    ]


def _queries(first: int, last: int) -> dict[str, tuple[Query, bool]]:
    """Each kind of request, and whether the text-query target applies to it."""
    return {
        "one Arabic word": (_one_arabic, True),
        "two Arabic words": (_two_arabic, True),
        "one English word": (_english, True),
        "word + category + bbox": (_text_category_bbox, True),
        "category + status, deep cursor": (_deep_listing(first, last), False),
    }


def _measure(
    runtime: Runtime, principal: Principal, first: int, last: int, requests: int
) -> list[Row]:
    rows: list[Row] = []
    plans: dict[str, str] = {}
    for name, (query, target) in _queries(first, last).items():
        rng = random.Random(name)
        timings, counts = _timed(
            runtime, principal, [query(rng) for _ in range(requests + _WARM_UP)]
        )
        rows += _latency_rows(name, timings, counts, target=target)
        plans[name] = _explain(runtime, principal, *query(rng))
    for name, plan in plans.items():
        print(f"\nEXPLAIN ANALYZE, {name}:\n{plan}")
    text_plans = [plan for name, plan in plans.items() if _queries(first, last)[name][1]]
    once = sum(_matches_once(plan) for plan in text_plans)
    rows.append(
        Row(
            label="text matches found once and hashed",
            value=f"{once} of {len(text_plans)} plans",
            target="all",
            met=once == len(text_plans),
        )
    )
    return rows


def _matches_once(plan: str) -> bool:
    """Whether the matches are found in one pass and then hashed.

    Every node that tests `tsv @@` must run once (a GIN bitmap or one scan, as the
    planner costs it), not once per incident: that made a rare word read the whole log.
    And the matches must be hashed (a hashed subplan or a hash join), not rescanned per
    incident: that compared every incident with every match.
    """
    loops, tests = 0, []
    for line in plan.splitlines():
        if found := re.search(r"actual time=\S+ rows=\d+ loops=(\d+)", line):
            loops = int(found.group(1))
        if "tsv @@" in line:
            tests.append(loops)
    hashed = re.search(r"hashed SubPlan \d+\), false\)|Hash (Semi )?Join", plan) is not None
    return hashed and bool(tests) and all(n == 1 for n in tests)


def _run(url: str, data_dir: Path, args: argparse.Namespace) -> list[Row]:
    runtime = open_runtime(Settings(data_dir=data_dir, database_url=url))
    try:
        principal, problems, first = _load(runtime, url, args)
        rows = _measure(runtime, principal, first, first + args.incidents, args.requests)
    finally:
        runtime.close()
    check = Row(
        label=f"bulk rows = create_incident's rows ({args.real} records)",
        value="; ".join(problems[:3]) or "equal",
        target="equal",
        met=not problems,
    )
    return [check, *rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100_000, help="incidents in all")
    parser.add_argument("--requests", type=int, default=300, help="timed requests of each kind")
    parser.add_argument("--real", type=int, default=100, help="made through create_incident")
    args = parser.parse_args()
    print_context()
    with (
        tempfile.TemporaryDirectory(prefix="locker-bench-") as data_dir,
        scratch_database("bench_search") as url,
    ):
        rows = _run(url, Path(data_dir), args)
    title = f"search and lists over {args.incidents} incidents (PostgreSQL, {_PAGE} per page)"
    return 0 if print_table(title, rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
