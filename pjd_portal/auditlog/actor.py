"""Who caused an access event, and where: plain values the writer copies into the row.

The log stands at the bottom of the house and knows nothing of requests, users or
organisations. The floors above build these once per request (accounts/audit_context.py)
or once per command run (`Actor.system`), so the row stays exact whatever later happens to
the account or the organisation.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PointOfCare:
    """The organisation acted for, and the legal entity it belongs to (itself if none)."""

    orgnr: str
    name: str
    legal_entity_orgnr: str
    legal_entity_name: str


@dataclass(frozen=True, slots=True)
class Actor:
    """The person (or nobody: a system job, an anonymous caller) behind an event, and the
    request it came through. `client_ip` is already in its canonical form (chain.canonical_ip)."""

    user_id: int | None = None
    pid: str = ""
    hpr_number: str = ""
    name: str = ""
    authorizations: frozenset[str] = frozenset()
    request_id: str = ""
    client_ip: str | None = None
    user_agent: str = ""

    @classmethod
    def system(cls, job: str) -> Actor:
        """A job run by the operators (a management command): no person, no address."""

        return cls(request_id=f"command:{job}"[:64])

    def without_person(self) -> Actor:
        """The same request with nobody in it: an event caused by someone other than the
        browser's logged-in user (a forged login answer, an expired session's end)."""

        return Actor(request_id=self.request_id, client_ip=self.client_ip, user_agent=self.user_agent)
