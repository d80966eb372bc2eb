"""Logged-in bench clinicians, as a HelseID login leaves them, without the provider.

Each run makes new clinicians (fastleger at seed_demo's Storgata legekontor, the shared
bench HPR number, LE), so no basis stated in an earlier run still holds for them: the
basis POSTs state new ones. Each session holds exactly what PortalCallbackView.login_success
and mozilla-django-oidc leave: the user, backend and hash of `auth.login`, the login and
activity stamps (accounts/sessions.py), the organisation acted for (`pjd_org_id`), the id
token (for logout; a synthetic string here, never sent to a provider), the token expiry
and the emptied state store.

Each clinician also gets a pool of handles to scale patients, for the basis POSTs: the
rows a lookup would make (access/handles.py), made here in bulk, without their lookup
events, since a lookup each would take longer than the benchmark itself.
"""

from __future__ import annotations

import datetime
import json
import random
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from bench import dataset
from pjd_portal.access.models import LookupPurpose, PatientLookup
from pjd_portal.accounts.context import SESSION_ORG_KEY
from pjd_portal.accounts.models import HprAuthorization, Organisation, Role, User
from pjd_portal.accounts.roles import grant
from pjd_portal.accounts.sessions import SESSION_ACTIVITY_AT_KEY, SESSION_LOGIN_AT_KEY, SESSION_LOGIN_KEY_KEY
from pjd_portal.documents.models import DocumentReference
from pjd_portal.patients.models import Patient

OIDC_BACKEND = settings.AUTHENTICATION_BACKENDS[0]


def _session(user: User, organisation: Organisation, login_key: str) -> str:
    now = int(time.time())
    session = SessionStore()
    session.update(
        {
            SESSION_KEY: str(user.pk),
            BACKEND_SESSION_KEY: OIDC_BACKEND,
            HASH_SESSION_KEY: user.get_session_auth_hash(),
            SESSION_LOGIN_AT_KEY: now,
            SESSION_ACTIVITY_AT_KEY: now,
            SESSION_LOGIN_KEY_KEY: login_key,
            SESSION_ORG_KEY: organisation.pk,
            "oidc_states": {},
            "oidc_login_next": None,
            "oidc_id_token": f"bench-synthetic-id-token-{uuid.uuid4().hex}",
            "oidc_id_token_expiration": time.time() + 15 * 60,
        }
    )
    session.create()
    assert session.session_key is not None
    return session.session_key


class Command(BaseCommand):
    help = "Make logged-in bench clinicians and their sessions (bench/); writes them as JSON."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--count", type=int, default=64, help="clinicians, one session each")
        parser.add_argument("--pool", type=int, default=200, help="handles per clinician for basis POSTs")
        parser.add_argument("--out", type=Path, required=True)

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        organisation = Organisation.objects.get(orgnr=dataset.FASTLEGE_ORGNR)
        HprAuthorization.objects.get_or_create(hpr_number=dataset.BENCH_HPR, code="LE")
        bench_patient = Patient.objects.get(national_id=dataset.synthetic_id(dataset.BENCH_BIRTH))
        heavy_patient = Patient.objects.get(national_id=dataset.synthetic_id(dataset.HEAVY_BIRTH))
        pool_patients = list(
            Patient.objects.filter(fastlege_hpr_number=dataset.BENCH_HPR)
            .exclude(pk__in=[bench_patient.pk, heavy_patient.pk])
            .order_by("pk")
            .values_list("pk", "national_id")
        )
        pool = min(options["pool"], len(pool_patients))
        taken = {pid for pid in User.objects.values_list("pid", flat=True) if pid}
        rng = random.Random()
        now = timezone.now()
        expires = now + datetime.timedelta(minutes=settings.ACCESS_ATTEST_MINUTES)
        sessions = []
        for index in range(options["count"]):
            birth = datetime.date(rng.randint(1950, 1995), rng.randint(1, 12), rng.randint(1, 28))
            pid = dataset.synthetic_id(birth, taken)
            taken.add(pid)
            user = User(
                username=f"bench-{uuid.uuid4().hex[:20]}",
                pid=pid,
                hpr_number=dataset.BENCH_HPR,
                first_name="Lege",
                last_name=dataset.BENCH_FAMILY,
                display_name=f"Lege {index + 1} {dataset.BENCH_FAMILY}",
            )
            user.set_unusable_password()
            user.save()
            grant(user, organisation, Role.CLINICIAN)
            # Each clinician its own stretch of patients: every (clinician, patient) once.
            login_key = secrets.token_hex(16)  # as the login's (accounts/sessions.py stamp_login)
            chosen = [pool_patients[(index * pool + j) % len(pool_patients)][0] for j in range(pool)]
            handles = PatientLookup.objects.bulk_create(
                PatientLookup(
                    user=user,
                    organisation=organisation,
                    patient_id=patient_id,
                    purpose=LookupPurpose.CLINICAL,
                    created_at=now,
                    expires_at=expires,
                    login_key=login_key,
                )
                for patient_id in chosen
            )
            sessions.append(
                {"key": _session(user, organisation, login_key), "pool": [str(h.handle) for h in handles]}
            )
        documents = DocumentReference.objects.filter(patient=bench_patient)
        answer = {
            "cookie_name": settings.SESSION_COOKIE_NAME,
            "csrf_cookie_name": settings.CSRF_COOKIE_NAME,
            "sessions": sessions,
            # National ids go in POST bodies only, never in a URL or a log line.
            "bench_patient": bench_patient.national_id,
            "heavy_patient": heavy_patient.national_id,
            "lookup_patients": [national_id for _pk, national_id in pool_patients[:50]],
            "small_document": str(documents.get(title=dataset.TITLE_SMALL).document_id),
            "large_document": str(documents.get(title=dataset.TITLE_LARGE).document_id),
        }
        options["out"].parent.mkdir(parents=True, exist_ok=True)
        options["out"].write_text(json.dumps(answer), encoding="utf-8")
        for session in sessions:
            self.stdout.write(f"{settings.SESSION_COOKIE_NAME}={session['key']}")
