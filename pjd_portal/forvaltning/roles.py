"""Access roles, for an organisation's access administrators (/forvaltning/tilgang/).

The list of who holds which role in the organisation acted for, since when and granted by
whom, with the revoked grants below; a form to grant a role (clinician, auditor, access
administrator) and one per grant to revoke it. Every grant and revocation is audited
(`roles_services`).

"Own staff", the only people an administrator may grant a role to, are the users with any
role, in force or revoked, in the organisation acted for (a guardian permission row or a
RevokedRoleGrant; the rule is `policy.is_own_staff`): the organisation has had them as
staff. A person is chosen from that list or given by HPR number; an id of anyone else,
posted by hand, is answered as a missing page and logged.

Everyone the policy keeps out of this part gets the 404 of a missing page, logged.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_POST

from pjd_portal.access import policy, selectors
from pjd_portal.accounts import roles
from pjd_portal.accounts.audit_context import actor_of, point_of_care_of
from pjd_portal.accounts.caller import caller_of
from pjd_portal.accounts.context import current_organisation
from pjd_portal.accounts.models import (
    Organisation,
    OrganisationUserObjectPermission,
    RevokedRoleGrant,
    Role,
    User,
)
from pjd_portal.auditlog import events
from pjd_portal.auditlog.events import Outcome
from pjd_portal.auditlog.services import AuditWriteFailed, record_event
from pjd_portal.forvaltning import roles_services as services
from pjd_portal.forvaltning.access import staff_required

TEMPLATE = "forvaltning/roles/roles.html"
HPR_NUMBER = re.compile(r"^[0-9]{9}$")
GRANTABLE_CHOICES = [(role.value, role.label) for role in Role if role in policy.GRANTABLE_ROLES]


access_administrator_required = staff_required(policy.may_administer_access)


# --- forms ---------------------------------------------------------------------------


class GrantRoleForm(forms.Form):
    person = forms.UUIDField(
        label=_("Person on your organisation's staff"),
        required=False,
        widget=forms.Select(attrs={"class": "ds-input"}),
    )
    hpr_number = forms.CharField(
        label=_("Or: HPR number"),
        help_text=_("9 digits. For a person on your organisation's staff who is not in the list."),
        required=False,
        max_length=20,
        widget=forms.TextInput(attrs={"class": "ds-input", "inputmode": "numeric", "autocomplete": "off"}),
    )
    role = forms.ChoiceField(
        label=_("Role"),
        choices=GRANTABLE_CHOICES,
        error_messages={
            "required": _("Choose the role to grant."),
            "invalid_choice": _("Choose one of the roles."),
        },
        widget=forms.RadioSelect,
    )

    def __init__(self, *args: Any, staff_choices: list[tuple[str, str]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        widget = self.fields["person"].widget
        assert isinstance(widget, forms.Select)
        widget.choices = [("", str(_("Choose a person"))), *(staff_choices or [])]

    def clean_hpr_number(self) -> str:
        value = "".join(self.cleaned_data["hpr_number"].split())
        if value and not HPR_NUMBER.match(value):
            raise forms.ValidationError(_("An HPR number has 9 digits. Check the number."))
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        person, hpr = data.get("person"), data.get("hpr_number")
        if "hpr_number" in data and "person" in data:
            if not person and not hpr:
                self.add_error("person", _("Choose the person, or enter their HPR number."))
            elif person and hpr:
                self.add_error("hpr_number", _("Choose the person or enter an HPR number, not both."))
        return data


class RevokeRoleForm(forms.Form):
    grant = forms.IntegerField(widget=forms.HiddenInput)


# --- the page ------------------------------------------------------------------------


def _name(user: User | None) -> str:
    return str(user.display_name or user.username) if user is not None else ""


def _organisation(request: HttpRequest) -> Organisation:
    organisation = current_organisation(request)
    assert organisation is not None  # the policy checked it
    return organisation


def _grants(
    organisation: Organisation,
) -> tuple[list[OrganisationUserObjectPermission], list[RevokedRoleGrant]]:
    """The organisation's roles in force and its revoked ones, newest grant first: two
    queries, however many."""

    in_force = list(
        roles.grants_in_force()
        .filter(content_object=organisation)
        .select_related("user", "granted_by", "permission")
        .order_by("-granted_at", "-pk")
    )
    revoked = list(
        RevokedRoleGrant.objects.filter(organisation=organisation)
        .select_related("user", "granted_by", "revoked_by")
        .order_by("-granted_at", "-pk")
    )
    return in_force, revoked


def _staff_choices(
    in_force: list[OrganisationUserObjectPermission], revoked: list[RevokedRoleGrant], *, self_id: int | None
) -> list[tuple[str, str]]:
    """The people a role can be granted to: the organisation's staff, but not the
    administrator themselves (no one grants themselves a role: `policy.may_grant_role`)."""

    people = {g.user.public_id: g.user for g in in_force if g.user.pk != self_id}
    people.update((g.user.public_id, g.user) for g in revoked if g.user.pk != self_id)
    return sorted(
        (
            (
                str(public_id),
                f"{_name(user)} ({_('HPR no.')} {user.hpr_number})" if user.hpr_number else _name(user),
            )
            for public_id, user in people.items()
        ),
        key=lambda choice: choice[1].lower(),
    )


def _page(
    request: HttpRequest,
    *,
    grant_form: GrantRoleForm | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    """The organisation's roles. A fixed number of queries, however many grants."""

    organisation = _organisation(request)
    in_force, revoked = _grants(organisation)
    choices = _staff_choices(in_force, revoked, self_id=request.user.pk)
    if grant_form is None:
        grant_form = GrantRoleForm(staff_choices=choices)
    else:
        grant_form.fields["person"].widget.choices = [("", str(_("Choose a person"))), *choices]
    context = {
        "organisation": organisation,
        "in_force": [
            (g, RevokeRoleForm(initial={"grant": g.pk}, auto_id=f"id_revoke{g.pk}_%s")) for g in in_force
        ],
        "revoked": revoked,
        "grant_form": grant_form,
        "error": error,
        "self_id": request.user.pk,
        "grantable_roles": sorted(policy.GRANTABLE_ROLES),
    }
    return render(request, TEMPLATE, context, status=status)


AUDIT_FAILED = _("The change could not be logged, so it was not made. Please try again in a minute.")
NOT_OWN_STAFF = _(
    "No one on your organisation's staff has this HPR number. Roles can be granted only to your own organisation's staff."
)
GRANT_MESSAGES = {
    services.Result.DONE: _("The role is granted. It applies from the person's next request."),
    services.Result.ALREADY: _("The person already holds this role. Nothing was changed."),
}
REVOKE_MESSAGES = {
    services.Result.DONE: _("The role is revoked. It no longer applies from the person's next request."),
    services.Result.NOT_IN_FORCE: _("This role was already revoked. Nothing was changed."),
}


@access_administrator_required
@require_GET
def access_roles(request: HttpRequest) -> HttpResponse:
    return _page(request)


def _refuse_not_own_staff(request: HttpRequest, details: dict[str, Any]) -> None:
    record_event(
        events.ACCESS_DENIED(
            outcome=Outcome.DENIED, reason_code="not_own_staff", view="access_role_grant", **details
        ),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )


@access_administrator_required
@require_POST
def access_role_grant(request: HttpRequest) -> HttpResponse:
    organisation = _organisation(request)
    form = GrantRoleForm(request.POST)
    if not form.is_valid():
        return _page(request, grant_form=form, status=400)
    staff = selectors.staff_facts(caller_of(request))
    role, person = form.cleaned_data["role"], form.cleaned_data["person"]
    if person:
        target: User | HttpResponse = _chosen_from_list(request, staff, form, person, role)
    else:
        target = _found_by_hpr_number(request, staff, form, role)
    if isinstance(target, HttpResponse):
        return target
    try:
        result, _grant = services.grant_role(
            caller=caller_of(request),
            organisation=organisation,
            user=target,
            role=role,
            via="list" if person else "hpr_number",
        )
    except AuditWriteFailed:
        return _page(request, grant_form=form, error=str(AUDIT_FAILED), status=503)
    (messages.success if result == services.Result.DONE else messages.info)(request, GRANT_MESSAGES[result])
    return redirect("forvaltning:access_roles")


def _chosen_from_list(
    request: HttpRequest, staff: policy.StaffFacts | None, form: GrantRoleForm, person: Any, role: str
) -> User | HttpResponse:
    """The person the page's list offered, if the policy lets this role go to them. The
    administrator's own id (the list leaves them out, but a form can be sent by hand) is
    refused with its own reason and message; any other refusal is a forged or stale id."""

    target = User.objects.filter(public_id=person).first()
    decision = policy.may_grant_role(
        staff,
        role,
        target_organisation_ids=roles.organisations_held([target.pk])[target.pk]
        if target is not None
        else frozenset(),
        target_user_id=target.pk if target is not None else None,
    )
    if target is not None and decision.reason_code == "no_self_grant":
        _refuse_grant(request, decision, {"person": str(person), "role": role})
        form.add_error("person", decision.message)
        return _page(request, grant_form=form, status=400)
    if target is None or not decision:
        # Not in the list the page offers: a forged or stale id, as for a missing page.
        _refuse_not_own_staff(request, {"person": str(person), "role": role})
        raise Http404()
    return target


def _refuse_grant(request: HttpRequest, decision: policy.Decision, details: dict[str, Any]) -> None:
    record_event(
        events.ACCESS_DENIED(
            outcome=Outcome.DENIED,
            reason_code=decision.reason_code[:50],
            view="access_role_grant",
            **details,
        ),
        actor=actor_of(request),
        where=point_of_care_of(request),
    )


def _found_by_hpr_number(
    request: HttpRequest, staff: policy.StaffFacts | None, form: GrantRoleForm, role: str
) -> User | HttpResponse:
    """Own staff with the form's HPR number (the policy says who is); the same answer
    whether the number is unknown or belongs to someone else's staff, so the form reveals
    no one outside. An HPR number is one person's: more than a few accounts with it is not
    a case to choose from. A refusal is the form again, saying why."""

    hpr = form.cleaned_data["hpr_number"]
    with_number = {u.pk: u for u in User.objects.filter(hpr_number=hpr).order_by("pk")[:10]}
    held = roles.organisations_held(list(with_number))
    own = policy.own_staff_among(staff, held)
    if len(own) != 1:
        _refuse_not_own_staff(request, {"hpr_number": hpr, "role": role})
        form.add_error("hpr_number", NOT_OWN_STAFF)
        return _page(request, grant_form=form, status=400)
    target = with_number[own[0]]
    decision = policy.may_grant_role(
        staff, role, target_organisation_ids=held[target.pk], target_user_id=target.pk
    )
    if not decision:
        _refuse_grant(request, decision, {"hpr_number": hpr, "role": role})
        form.add_error("hpr_number" if decision.reason_code == "no_self_grant" else "role", decision.message)
        return _page(request, grant_form=form, status=400)
    return target


@access_administrator_required
@require_POST
def access_role_revoke(request: HttpRequest) -> HttpResponse:
    organisation = _organisation(request)
    form = RevokeRoleForm(request.POST)
    grant = _grant_of(organisation, form.cleaned_data["grant"]) if form.is_valid() else None
    if grant is None:  # not a grant of this organisation: as for a missing page, logged
        record_event(
            events.ACCESS_DENIED(
                outcome=Outcome.NOT_FOUND,
                reason_code="unknown_grant",
                view="access_role_revoke",
                grant=str(request.POST.get("grant", ""))[:20],
            ),
            actor=actor_of(request),
            where=point_of_care_of(request),
        )
        raise Http404()
    staff = selectors.staff_facts(caller_of(request))
    try:
        result, decision = services.revoke_role(caller=caller_of(request), staff=staff, grant=grant)
    except AuditWriteFailed:
        return _page(request, error=str(AUDIT_FAILED), status=503)
    if result == services.Result.REFUSED:
        return _page(request, error=decision.message or str(_("The role cannot be revoked.")), status=400)
    (messages.success if result == services.Result.DONE else messages.info)(request, REVOKE_MESSAGES[result])
    return redirect("forvaltning:access_roles")


def _grant_of(
    organisation: Organisation, grant_id: int
) -> OrganisationUserObjectPermission | RevokedRoleGrant | None:
    """A role in force in this organisation; else one revoked already (its row is gone,
    the record of it kept)."""

    return (
        roles.grants_in_force()
        .select_related("user", "permission")
        .filter(pk=grant_id, content_object=organisation)
        .first()
    ) or (
        RevokedRoleGrant.objects.select_related("user")
        .filter(grant_id=grant_id, organisation=organisation)
        .order_by("-revoked_at")
        .first()
    )
