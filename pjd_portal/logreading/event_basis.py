"""Why an access happened, as the log review shows it: the basis and the reason given.

The reason is written once, where the basis is stated: on the basis or emergency-access
event (its reason text) and on the AccessAttest. The events made under that basis (a list,
an open) carry the attest, not the reason again; their page shows the attest's reason, so an
open under AKUTT shows why the emergency access was taken.
"""

from __future__ import annotations

from pjd_portal.access.models import AccessAttest, Basis
from pjd_portal.auditlog.models import AccessEvent


def basis_label(code: str) -> str:
    return str(Basis(code).label) if code in Basis.values else code


def basis_reason(event: AccessEvent) -> str:
    """The reason given for the basis of this access: the event's own, else its attest's
    (one query when the attest was not loaded with the event)."""

    if event.reason_text:
        return event.reason_text
    if event.attest_id is None:
        return ""
    attest = AccessAttest.objects.filter(pk=event.attest_id).only("reason").first()
    return attest.reason if attest is not None else ""
