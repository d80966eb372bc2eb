"""Anchors: the chain heads, signed, kept away from the database.

The hash chains find any edit, deletion or reordering that leaves the rest of the log as
it was. Someone who owns the database can do more: rewrite an event and recompute every
later hash and the head, delete a whole chain with its head, or delete a tail and roll
the head back. Against that, the heads are anchored outside the database: `manage.py
audit_anchor` prints every head (chain, seq, hash) with an HMAC under a key the database
never sees (PJD_AUDIT_ANCHOR_KEY), to be shipped where its operators cannot write (the
national log store, write-once storage). `verify_audit --anchor FILE` then also checks
that every anchored chain still holds, at the anchored seq, exactly the anchored hash:
the chain is a hash chain, so its whole history up to that point is as it was then.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from pjd_portal.auditlog.models import AccessEvent, AuditChainHead

FORMAT = "pjd-audit-anchor/1"


class AnchorInvalid(Exception):
    """The anchor is not one this portal signed (edited, truncated, another key)."""


def _key() -> bytes:
    key = settings.AUDIT_ANCHOR_KEY
    if not key:
        raise AnchorInvalid("no anchor key: set PJD_AUDIT_ANCHOR_KEY")
    return str(key).encode()


def _mac(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hmac.new(_key(), canonical.encode(), hashlib.sha256).hexdigest()


def make_anchor() -> dict[str, Any]:
    """Every chain head now, signed. The heads are read in one statement (one snapshot)."""

    _key()  # no key, no anchor: refuse before reading anything
    heads = {str(h.chain): [h.seq, h.last_hash] for h in AuditChainHead.objects.order_by("chain")}
    body = {"format": FORMAT, "created": timezone.now().isoformat(), "heads": heads}
    return {**body, "mac": _mac(body)}


def load_anchor(text: str) -> dict[str, Any]:
    try:
        anchor = json.loads(text)
        body = {k: anchor[k] for k in ("format", "created", "heads")}
        mac = str(anchor["mac"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AnchorInvalid("not an anchor file") from exc
    if body["format"] != FORMAT or not hmac.compare_digest(mac, _mac(body)):
        raise AnchorInvalid("the anchor's signature does not match (edited, or another key)")
    return {**body, "mac": mac}


@dataclass(frozen=True)
class AnchorBreak:
    chain: int
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"chain {self.chain}, seq {self.seq}: {self.problem}"


def check_anchor(anchor: dict[str, Any]) -> list[AnchorBreak]:
    """What no longer matches the anchor. Run with the chains' own check (verify_all):
    together they say the log up to the anchor is as it was, and whole since."""

    created = anchor["created"]
    breaks: list[AnchorBreak] = []
    heads = {h.chain: h for h in AuditChainHead.objects.all()}
    for chain_text, (seq_value, last_hash) in sorted(anchor["heads"].items(), key=lambda kv: int(kv[0])):
        chain, seq = int(chain_text), int(seq_value)
        if seq == 0:
            continue
        head = heads.get(chain)
        stored = (
            AccessEvent.objects.filter(chain=chain, chain_seq=seq)
            .values_list("entry_hash", flat=True)
            .first()
        )
        if head is None and stored is None:
            breaks.append(AnchorBreak(chain, seq, f"anchored at {created}, now gone (deleted with its head)"))
        elif head is not None and head.seq < seq:
            breaks.append(
                AnchorBreak(
                    chain, seq, f"anchored at {created}, the head is back at seq {head.seq} (tail deleted)"
                )
            )
        elif stored != last_hash:
            breaks.append(
                AnchorBreak(chain, seq, f"does not hold the hash anchored at {created} (history rewritten)")
            )
    return breaks


def starts(anchor: dict[str, Any]) -> dict[int, tuple[int, str]]:
    """Where each chain's check may begin once the anchor holds (verify_audit --from-anchor)."""
    return {int(chain): (int(seq), str(last_hash)) for chain, (seq, last_hash) in anchor["heads"].items()}
