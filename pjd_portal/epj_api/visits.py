"""The API's caller: the attest's practitioner, acting for the attest's organisation, with
no session (the launch has its logged-in person instead: clinic/launch_views.py)."""

from __future__ import annotations

from django.http import HttpRequest

from pjd_portal.access import policy
from pjd_portal.access.attested import AttestedVisit, attested_visit, origin_of, refuse_visit
from pjd_portal.access.models import AttestChannel
from pjd_portal.access.trust_framework import TrustAttest
from pjd_portal.accounts.audit_context import anonymous_actor
from pjd_portal.accounts.caller import caller_acting_for
from pjd_portal.accounts.helseid_tokens import VerifiedToken
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import record_event

# Said when the portal knows no such person with a clinician role there: as the portal's
# own pages say it to a person without the role.
NO_CLINICIAN = policy.Decision(False, "no_clinician_role", "The practitioner has no clinician role here.")


def api_visit(*, token: VerifiedToken, attest: TrustAttest, request: HttpRequest) -> AttestedVisit:
    """The patient the attest names, reached with a basis in force, or why not (logged)."""

    origin = origin_of(attest, channel=AttestChannel.API, client_id=token.client_id)
    caller = caller_acting_for(
        request, pid=attest.practitioner_pid, hpr_number=attest.hpr_number, orgnr=attest.point_of_care_orgnr
    )
    if caller is None:
        # Not a person (or an organisation) of the portal's: named in the event by the pid
        # the attest gave, as a refused login is.
        record_event(
            events.API_CALL_REFUSED(
                outcome=Outcome.DENIED,
                reason_code="practitioner_unknown",
                details={**origin.details(), "jti": token.jti},
            ),
            actor=anonymous_actor(request, pid=attest.practitioner_pid),
            where=None,
        )
        return AttestedVisit(None, NO_CLINICIAN, None)
    where = caller.where
    acting = policy.may_act_on_attest(
        person_pid=caller.user.pid or "",
        person_hpr_number=caller.user.hpr_number,
        organisation_orgnr=where.orgnr if where else "",
        legal_entity_orgnr=where.legal_entity_orgnr if where else "",
        attest_pid=attest.practitioner_pid,
        attest_hpr_number=attest.hpr_number,
        attest_point_of_care=attest.point_of_care_orgnr,
        attest_legal_entity=attest.legal_entity_orgnr,
    )
    if not acting:  # the point of care is not part of the legal entity the attest names
        return refuse_visit(caller=caller, origin=origin, decision=acting)
    return attested_visit(caller=caller, attest=attest, origin=origin)
