"""Tamper evidence for the access log: hash chains.

Every event carries an `entry_hash` over its content and its place in its chain (chain,
seq and the `prev_hash` of the event before it). One scheme:
    entry_hash = sha256("prev_hash:chain:seq:" + sha256(canonical JSON of the content))
where the content is every hashed field but the place (CONTENT_FIELDS). The request's own
thread makes the content digest, so the group writer's serial part per event is one
short hash; it binds the content, the order and the predecessor alike.

Until migration audit/0017 the patient chains (0-63) used a second scheme, the sha256 of
the canonical JSON of the whole event, place included. Their links up to where each chain
stood then are still verified that way: the chain's head row says how far
(`AuditChainHead.whole_json_until`). Nothing writes that scheme any more.

Chains are sharded so concurrent writers do not queue on one row:
- an event written inside a transaction (with the work it describes) goes to one of 64
  chains by a hash of the patient's national id, or of the actor when there is no patient;
- an event committed by a group writer (audit/group_commit.py) goes to that writer's own
  chain (WRITER_CHAINS), held by it alone for the life of its database connection.
Editing, deleting or reordering rows, even behind the database triggers' back, breaks a
link that `verify_audit` finds; the chain heads also catch a deleted tail.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connection, transaction

from pjd_portal.auditlog.models import AccessEvent, AuditChainHead

CHAINS = 64  # fixed: changing it would re-shard existing chains
# The group writers' own chains: each claims the first free one (migration 0013).
WRITER_CHAINS = range(1000, 2000)
GENESIS = "0" * 64

# The content a hash covers: every field of the event but the database id and the hash.
HASHED_FIELDS = (
    "event_id",
    "occurred_at",
    "event_type",
    "outcome",
    "reason_code",
    "flagged_for_review",
    "actor_user_id",
    "actor_pid",
    "actor_hpr_number",
    "actor_name",
    "actor_authorizations",
    "organisation_orgnr",
    "organisation_name",
    "patient_id",
    "patient_national_id",
    "document_id",
    "source_orgnr",
    "basis",
    "purpose_of_use",
    "reason_text",
    "attest_id",
    "request_id",
    "client_ip",
    "user_agent",
    "details",
    "chain",
    "chain_seq",
    "prev_hash",
    # Added after the first events were written: hashed only when set, so every earlier
    # hash still holds (an event from before has them empty).
    "legal_entity_orgnr",
    "legal_entity_name",
)
LATER_FIELDS = frozenset({"legal_entity_orgnr", "legal_entity_name"})
# Where an event sits in its chain: in its link, not in its content digest.
PLACE_FIELDS = ("chain", "chain_seq", "prev_hash")
CONTENT_FIELDS = tuple(name for name in HASHED_FIELDS if name not in PLACE_FIELDS)


def chain_for(patient_national_id: str, actor_pid: str) -> int:
    key = patient_national_id or actor_pid or ""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % CHAINS


@functools.lru_cache(maxsize=4096)
def canonical_ip(value: str) -> str:
    """An address as the hash covers it, the same on every Python version: IPv4 dotted,
    IPv6 as RFC 5952 hextets (also when IPv4-mapped, which Python 3.13 started to print
    dotted; the hashes were made with 3.11, which printed hextets)."""

    address = ipaddress.ip_address(value)
    if address.version == 4:
        return str(address)
    hextets = [format(int(h, 16), "x") for h in address.exploded.split(":")]
    best_start, best_len, start = -1, 1, -1  # the longest run of 2+ zero groups, first wins
    for i, h in enumerate([*hextets, "end"]):
        if h == "0":
            start = i if start < 0 else start
            continue
        if start >= 0 and i - start > best_len:
            best_start, best_len = start, i - start
        start = -1
    if best_start < 0:
        return ":".join(hextets)
    head, tail = hextets[:best_start], hextets[best_start + best_len :]
    return ":".join(head) + "::" + ":".join(tail)


def canonical_content(event: AccessEvent, fields: tuple[str, ...] = HASHED_FIELDS) -> str:
    """The JSON text a hash covers (for the group writer, also the row it sends).

    Exactly this form is what every stored hash was made from: change it only together
    with a new hash scheme, never in place."""

    content = {name: getattr(event, name) for name in fields}
    for name in LATER_FIELDS:
        if not content.get(name, True):
            del content[name]
    occurred_at = content["occurred_at"]
    if isinstance(occurred_at, datetime.datetime):
        content["occurred_at"] = occurred_at.astimezone(datetime.UTC).isoformat(timespec="microseconds")
    content["event_id"] = str(content["event_id"])
    content["client_ip"] = canonical_ip(content["client_ip"]) if content["client_ip"] else ""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def hash_of(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


def content_digest(event: AccessEvent) -> tuple[str, str]:
    """A writer-chain event's content without its place, and that content's digest."""

    canonical = canonical_content(event, CONTENT_FIELDS)
    return canonical, hash_of(canonical)


def link_hash(prev_hash: str, chain: int, seq: int, digest: str) -> str:
    return hashlib.sha256(f"{prev_hash}:{chain}:{seq}:{digest}".encode()).hexdigest()


def entry_hash(event: AccessEvent, whole_json_until: int = 0) -> str:
    """The hash `event` must carry at its place. `whole_json_until`: its chain head's, for
    the links made before there was one scheme (verification only)."""

    if event.chain_seq <= whole_json_until:
        return whole_json_hash(event)
    return link_hash(event.prev_hash, event.chain, event.chain_seq, content_digest(event)[1])


def whole_json_hash(event: AccessEvent) -> str:
    """The retired scheme of the patient chains (before audit/0017): the canonical JSON of
    the whole event, place included. Kept so that their old links still verify."""

    return hash_of(canonical_content(event))


def link(event: AccessEvent) -> None:
    """Give `event` its place in its chain. Call inside the transaction that inserts it.

    The head row's UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite)
    before anything is read, so two writers of one chain cannot both take one seq.
    """

    event.chain = chain_for(event.patient_national_id, event.actor_pid)
    table = AuditChainHead._meta.db_table
    with connection.cursor() as cursor:
        for _attempt in range(2):
            cursor.execute(
                f"UPDATE {table} SET seq = seq + 1 WHERE chain = %s RETURNING seq, last_hash",  # noqa: S608
                [event.chain],
            )
            row = cursor.fetchone()
            if row is not None:
                break
            cursor.execute(
                f"INSERT INTO {table} (chain, seq, last_hash) VALUES (%s, 0, %s) ON CONFLICT (chain) DO NOTHING",  # noqa: S608
                [event.chain, GENESIS],
            )
        else:  # pragma: no cover - the insert above makes the second UPDATE find a row
            raise RuntimeError("audit chain head missing")
        event.chain_seq, event.prev_hash = int(row[0]), str(row[1])
        event.entry_hash = entry_hash(event)
        cursor.execute(
            f"UPDATE {table} SET last_hash = %s WHERE chain = %s",  # noqa: S608
            [event.entry_hash, event.chain],
        )


@dataclass(frozen=True)
class BrokenLink:
    chain: int
    seq: int
    event_id: str
    problem: str

    def __str__(self) -> str:
        return f"chain {self.chain}, seq {self.seq} (event {self.event_id}): {self.problem}"


def verify_chain(
    chain: int, head: AuditChainHead | None, start: tuple[int, str] | None = None
) -> tuple[int, BrokenLink | None]:
    """The number of events checked and the first broken link of one chain (None when it
    is whole). `start` (seq, hash): check only after that link, taken as given (an
    anchor's; anchors.check_anchor makes sure the chain still holds it)."""

    expected_seq, expected_prev = 1, GENESIS
    whole_json_until = head.whole_json_until if head else 0
    query = AccessEvent.objects.filter(chain=chain)
    if start is not None and start[0] > 0:
        expected_seq, expected_prev = start[0] + 1, start[1]
        query = query.filter(chain_seq__gt=start[0])
    last_event_id = ""
    checked = 0
    events: Iterator[AccessEvent] = query.order_by("chain_seq", "id").iterator(chunk_size=5000)
    for event in events:
        checked += 1
        last_event_id = str(event.event_id)
        if event.chain_seq != expected_seq:
            problem = (
                f"seq {expected_seq} is missing (deleted)"
                if event.chain_seq > expected_seq
                else f"seq {event.chain_seq} appears twice (inserted or copied)"
            )
            return checked, BrokenLink(chain, expected_seq, last_event_id, problem)
        if event.prev_hash != expected_prev:
            return checked, BrokenLink(
                chain,
                event.chain_seq,
                last_event_id,
                "does not follow its predecessor (reordered or replaced)",
            )
        if entry_hash(event, whole_json_until) != event.entry_hash:
            return checked, BrokenLink(
                chain, event.chain_seq, last_event_id, "content does not match its hash (edited)"
            )
        expected_seq += 1
        expected_prev = event.entry_hash
    head_seq = head.seq if head else 0
    head_hash = head.last_hash if head else GENESIS
    if head_seq != expected_seq - 1 or (head_seq and head_hash != expected_prev):
        return checked, BrokenLink(
            chain,
            expected_seq,
            last_event_id,
            f"chain ends at seq {expected_seq - 1} but its head says {head_seq} (tail deleted)",
        )
    return checked, None


def verify_all(starts: dict[int, tuple[int, str]] | None = None) -> tuple[int, list[BrokenLink]]:
    """Check every chain (each after its `starts` link, if given); returns the number of
    events checked and the first broken link of each broken chain."""

    heads = {h.chain: h for h in AuditChainHead.objects.all()}
    chains = set(heads) | set(AccessEvent.objects.values_list("chain", flat=True).distinct())
    checked, broken = 0, []
    for chain in sorted(chains):
        count, link = verify_chain(chain, heads.get(chain), (starts or {}).get(chain))
        checked += count
        if link is not None:
            broken.append(link)
    return checked, broken


@contextlib.contextmanager
def consistent_snapshot() -> Iterator[None]:
    """One view of the whole log for a check while writers go on appending: without it,
    events committed between reading the heads and reading a chain look like a head that
    fell behind its chain. PostgreSQL: a read-only REPEATABLE READ transaction. SQLite (the
    one-user demo) reads as it is: a long read there would hold its writers back."""

    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield
