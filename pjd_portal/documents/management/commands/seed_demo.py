"""Load deterministic synthetic demo data: organisations, staff, patients, documents.

Synthetic only: national ids are Tenor-style (month + 80) or NHN's published test
patients; names are invented. Running it again on a seeded database changes nothing.
"""

from __future__ import annotations

import datetime
import json
import random
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from pjd_portal.accounts.models import (
    HprAuthorization,
    Organisation,
    OrganisationKind,
    Role,
    User,
)
from pjd_portal.accounts.roles import ROLE_PERMISSIONS, grant, grants_in_force
from pjd_portal.documents import demo_content
from pjd_portal.documents.models import (
    ConfidentialityCode,
    DocumentCategory,
    DocumentContent,
    DocumentReference,
    DocumentSource,
)
from pjd_portal.patients.models import AddressProtection, Gender, Patient, PrivacyChoice, PrivacyChoiceKind
from pjd_portal.patients.national_id import NationalIdKind, has_valid_check_digits

USERS_FILE = settings.BASE_DIR / "devidp" / "users.json"

# (orgnr, name, kind, region, is_source, is_consumer)
ORGANISATIONS = [
    ("310000000", "Storgata legekontor", OrganisationKind.FASTLEGEKONTOR, "", False, True),
    ("310100005", "Bergen legevakt", OrganisationKind.LEGEVAKT, "Helse Vest", True, True),
    ("310200018", "Solheim sykehjem", OrganisationKind.SYKEHJEM, "", False, True),
    ("310300004", "Oslo universitetssykehus HF", OrganisationKind.HELSEFORETAK, "Helse Sør-Øst", True, True),
    ("310400009", "Helse Bergen HF", OrganisationKind.HELSEFORETAK, "Helse Vest", True, True),
    (
        "310500003",
        "Universitetssykehuset Nord-Norge HF",
        OrganisationKind.HELSEFORETAK,
        "Helse Nord",
        True,
        True,
    ),
    # Its documents are not in the database: they are at a remote MHD source, the test FHIR
    # server that `make run` starts beside the portal (seed_remote_demo writes its data).
    ("310600008", "St. Olavs hospital HF", OrganisationKind.HELSEFORETAK, "Helse Midt-Norge", True, True),
    ("310900001", "PJD forvaltning", OrganisationKind.FORVALTNING, "", False, False),
]
REMOTE_SOURCE_ORGNR = "310600008"

# username -> (HPR authorizations, role, orgnr the role is held in)
STAFF = {
    "fastlege": (["LE"], Role.CLINICIAN),
    "legevakt": (["LE"], Role.CLINICIAN),
    "sykepleier": (["SP"], Role.CLINICIAN),
    "niva3": (["LE"], Role.CLINICIAN),
    "revisor": ([], Role.AUDITOR),
    "personvern": ([], Role.PRIVACY_OFFICER),
    "tilgangsstyrer": ([], Role.ACCESS_ADMINISTRATOR),
}

# Each source's own sharing rules, differing as the regions' do (docs/domain.md, "Sources"): Helse Sør-Øst
# and Helse Vest show their lists to every kjernejournal user, Helse Nord only to those
# who may open. Nurses at the nursing home therefore see and open Oslo's documents, see
# but cannot open Bergen's, and do not see Tromsø's at all.
ALL_HEALTH_PERSONNEL = ["LE", "SP", "JM", "PS", "FA1", "HE"]
CLINICAL_KINDS = ["fastlegekontor", "legevakt", "sykehjem", "helseforetak", "avtalespesialist"]
SOURCE_RULES: dict[str, dict[str, Any]] = {
    "310300004": {  # Oslo universitetssykehus HF (Helse Sør-Øst)
        "list_authorizations": ALL_HEALTH_PERSONNEL,
        "list_organisation_kinds": CLINICAL_KINDS,
        "open_authorizations": ["LE", "SP"],
        "open_organisation_kinds": CLINICAL_KINDS,
        "list_only_if_may_open": False,
    },
    "310400009": {  # Helse Bergen HF (Helse Vest): everyone sees the list, doctors open
        "list_authorizations": ALL_HEALTH_PERSONNEL,
        "list_organisation_kinds": CLINICAL_KINDS,
        "open_authorizations": ["LE"],
        "open_organisation_kinds": CLINICAL_KINDS,
        "list_only_if_may_open": False,
    },
    "310500003": {  # Universitetssykehuset Nord-Norge HF (Helse Nord)
        "list_authorizations": ["LE", "SP"],
        "list_organisation_kinds": CLINICAL_KINDS,
        "open_authorizations": ["LE"],
        "open_organisation_kinds": ["fastlegekontor", "legevakt", "helseforetak", "avtalespesialist"],
        "list_only_if_may_open": True,
    },
    "310600008": {  # St. Olavs hospital HF (Helse Midt-Norge), a remote MHD source in the demo
        "list_authorizations": ALL_HEALTH_PERSONNEL,
        "list_organisation_kinds": CLINICAL_KINDS,
        "open_authorizations": ["LE", "SP"],
        "open_organisation_kinds": CLINICAL_KINDS,
        "list_only_if_may_open": False,
    },
    "310100005": {  # Bergen legevakt
        "list_authorizations": ["LE", "SP"],
        "list_organisation_kinds": CLINICAL_KINDS,
        "open_authorizations": ["LE", "SP"],
        "open_organisation_kinds": CLINICAL_KINDS,
        "list_only_if_may_open": False,
    },
}

NHN_TEST_PATIENTS = ["13116900216", "12119000465", "08077000292"]

DEPARTMENTS = {
    "310300004": [
        ("Medisinsk klinikk", "4001"),
        ("Kirurgisk klinikk", "4002"),
        ("Radiologisk avdeling", "4003"),
    ],
    "310400009": [
        ("Medisinsk avdeling", "5001"),
        ("Laboratorieklinikken", "5002"),
        ("Radiologisk avdeling", "5003"),
    ],
    "310500003": [("Indremedisinsk klinikk", "6001"), ("Diagnostisk klinikk", "6002")],
    "310100005": [("Legevakten", "7001")],
    "310600008": [
        ("Klinikk for hjertemedisin", "8001"),
        ("Avdeling for medisinsk biokjemi", "8002"),
        ("Klinikk for bildediagnostikk", "8003"),
    ],
}
# What each department writes, as document kinds (demo_content.document_kind()): an epikrise
# comes from a clinical department, a result from a laboratory, a radiology report from a
# radiology department; a clinical department also keeps the referrals it has received.
_CLINICAL = frozenset({"epikrise", "sammenfatning", "ekg", "lungefunksjon", "svar", "henvisning"})
_SURGICAL = frozenset({"epikrise", "sammenfatning", "svar", "henvisning"})
_IMAGING = frozenset({"radiologi", "nukleaer"})
DEPARTMENT_KINDS: dict[str, frozenset[str]] = {
    "Medisinsk klinikk": _CLINICAL,
    "Kirurgisk klinikk": _SURGICAL,
    "Radiologisk avdeling": _IMAGING,
    "Medisinsk avdeling": _CLINICAL,
    "Laboratorieklinikken": frozenset({"biokjemi"}),
    "Indremedisinsk klinikk": _CLINICAL,
    "Diagnostisk klinikk": frozenset({"biokjemi", "mikrobiologi", "patologi", *_IMAGING}),
    # A legevakt takes an EKG and runs its own rapid tests; no scans, no epikriser.
    "Legevakten": frozenset({"ekg", "biokjemi"}),
    "Klinikk for hjertemedisin": _CLINICAL,
    "Avdeling for medisinsk biokjemi": frozenset({"biokjemi"}),
    "Klinikk for bildediagnostikk": _IMAGING,
    "Avdeling for mikrobiologi": frozenset({"mikrobiologi"}),
    "Avdeling for medisinsk mikrobiologi": frozenset({"mikrobiologi"}),
    "Avdeling for patologi": frozenset({"patologi"}),
}
# Departments some documents come from besides DEPARTMENTS. Kept apart because the
# seeders draw from DEPARTMENTS: lengthening those lists would change the random stream
# and with it every later draw (document counts, dates) the demo and its README rely on.
MORE_DEPARTMENTS: dict[str, list[tuple[str, str]]] = {
    "310300004": [
        ("Avdeling for medisinsk biokjemi", "4004"),
        ("Avdeling for mikrobiologi", "4005"),
        ("Avdeling for patologi", "4006"),
    ],
    "310400009": [("Avdeling for mikrobiologi", "5004"), ("Avdeling for patologi", "5005")],
    "310600008": [("Avdeling for medisinsk mikrobiologi", "8004"), ("Avdeling for patologi", "8005")],
}


def fitting_department(orgnr: str, kind: str, drawn: tuple[str, str] | None = None) -> tuple[str, str] | None:
    """The department of `orgnr` that writes documents of `kind`: `drawn` if it does, else the
    first that does; None if the organisation has none (a legevakt and a CT)."""

    if drawn is not None and kind in DEPARTMENT_KINDS[drawn[0]]:
        return drawn
    for department in DEPARTMENTS[orgnr] + MORE_DEPARTMENTS.get(orgnr, []):
        if kind in DEPARTMENT_KINDS[department[0]]:
            return department
    return None


def pick_author(kind: str, orgnr: str, roll: int) -> demo_content.DemoAuthor:
    """One of those who write `kind` where the document comes from, by a random `roll`."""

    workplace = demo_content.LEGEVAKT if orgnr in LEGEVAKT_ORGNRS else demo_content.HOSPITAL
    authors = demo_content.authors_for(kind, workplace)
    return authors[roll % len(authors)]


LEGEVAKT_ORGNRS = {orgnr for orgnr, _n, kind, *_rest in ORGANISATIONS if kind == OrganisationKind.LEGEVAKT}

GIVEN_F = ["Ingrid", "Sofie", "Nora", "Emma", "Kari", "Hanne", "Marit", "Astrid", "Liv", "Sigrid"]
GIVEN_M = ["Ola", "Per", "Jonas", "Henrik", "Lars", "Knut", "Erik", "Magnus", "Arne", "Nils"]
FAMILY = [
    "Testesen",
    "Prøvestad",
    "Eksempelrud",
    "Demoberg",
    "Syntetisk",
    "Fiktivik",
    "Dummyvik",
    "Modellund",
]
# The seeder once drew its authors from a list of five (rng.choice); it still draws a
# number below five there, so the random stream, and every later draw, stays as it was.
AUTHOR_DRAW = 5
STREETS = ["Eksempelveien", "Testgata", "Prøvestien", "Demoalleen"]


def synthetic_national_id(rng: random.Random, birth: datetime.date, *, d_number: bool = False) -> str:
    """A Tenor-style synthetic number (month + 80) with valid mod-11 check digits."""

    while True:
        individual = rng.randint(0, 499) if birth.year < 2000 else rng.randint(500, 999)
        day = birth.day + (40 if d_number else 0)
        base = f"{day:02d}{birth.month + 80:02d}{birth.year % 100:02d}{individual:03d}"
        for k1 in range(10):
            for k2 in range(10):
                candidate = f"{base}{k1}{k2}"
                if has_valid_check_digits(candidate):
                    return candidate


def _load_users() -> dict[str, dict[str, Any]]:
    users: dict[str, dict[str, Any]] = json.loads(Path(USERS_FILE).read_text(encoding="utf-8"))["users"]
    return users


def _fitting(
    sources: list[DocumentSource], drawn: DocumentSource, kind: str, drawn_department: tuple[str, str]
) -> tuple[DocumentSource, tuple[str, str]]:
    start = sources.index(drawn)
    for source in sources[start:] + sources[:start]:
        orgnr = source.organisation.orgnr
        department = fitting_department(orgnr, kind, drawn_department if source == drawn else None)
        if department is not None:
            return source, department
    raise ValueError(f"no demo source writes {kind}")


class Command(BaseCommand):
    help = "Load deterministic synthetic demo data (organisations, staff, patients, documents)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--patients", type=int, default=30, help="synthetic patients besides NHN's three")
        parser.add_argument("--max-documents", type=int, default=50, help="at most this many per patient")
        parser.add_argument("--min-documents", type=int, default=10)

    def handle(self, *args: Any, **options: Any) -> None:
        if Patient.objects.filter(national_id=NHN_TEST_PATIENTS[0]).exists():
            self.stdout.write("Demo data already present; nothing changed.")
            return
        with transaction.atomic():
            orgs = self._organisations()
            self._staff(orgs)
            patients = self._patients(options["patients"])
            count = self._documents(patients, orgs, options["min_documents"], options["max_documents"])
        self.stdout.write(
            f"Seeded {len(orgs)} organisations, {len(STAFF)} staff, {len(patients)} patients, {count} documents."
        )

    def _organisations(self) -> dict[str, Organisation]:
        orgs = {}
        for orgnr, name, kind, region, is_source, is_consumer in ORGANISATIONS:
            org, _ = Organisation.objects.update_or_create(
                orgnr=orgnr,
                defaults={
                    "name": name,
                    "kind": kind,
                    "region": region,
                    "is_source": is_source,
                    "is_consumer": is_consumer,
                },
            )
            orgs[orgnr] = org
            if is_source:
                DocumentSource.objects.update_or_create(
                    organisation=org, defaults={"name": name, **SOURCE_RULES[orgnr]}
                )
        return orgs

    def _staff(self, orgs: dict[str, Organisation]) -> None:
        for username, claims in _load_users().items():
            if username not in STAFF:
                continue
            authorizations, role = STAFF[username]
            user, _ = User.objects.update_or_create(
                pid=claims["pid"],
                defaults={
                    "username": f"demo-{username}",
                    "hpr_number": claims.get("hpr") or "",
                    "first_name": claims["given_name"],
                    "last_name": claims["family_name"],
                    "display_name": claims["name"],
                },
            )
            user.set_unusable_password()
            user.save()
            for code in authorizations:
                HprAuthorization.objects.get_or_create(hpr_number=claims["hpr"], code=code)
            org = orgs[claims["orgnr_parent"]]
            held = grants_in_force().filter(
                user=user, content_object=org, permission__codename=ROLE_PERMISSIONS[role]
            )
            if not held.exists():  # seed_demo runs again on a seeded database
                grant(user, org, role)

    def _patients(self, n_synthetic: int) -> list[Patient]:
        rng = random.Random(20261122)
        users = _load_users()
        fastlege_hpr = users["fastlege"]["hpr"]
        legevakt_hpr = users["legevakt"]["hpr"]
        patients: list[Patient] = []
        specs: list[tuple[str, str, datetime.date]] = []
        for value in NHN_TEST_PATIENTS:
            birth = datetime.date(1900 + int(value[4:6]), int(value[2:4]), int(value[0:2]))
            specs.append((value, NationalIdKind.FODSELSNUMMER, birth))
        for i in range(n_synthetic):
            birth = datetime.date(rng.randint(1935, 2015), rng.randint(1, 12), rng.randint(1, 28))
            d_number = i % 10 == 9
            value = synthetic_national_id(rng, birth, d_number=d_number)
            specs.append((value, NationalIdKind.SYNTHETIC, birth))
        for index, (value, kind, birth) in enumerate(specs):
            female = index % 2 == 0
            patient = Patient.objects.create(
                national_id=value,
                national_id_kind=kind,
                given_name=rng.choice(GIVEN_F if female else GIVEN_M),
                family_name=rng.choice(FAMILY),
                birth_date=birth,
                gender=Gender.FEMALE if female else Gender.MALE,
                address=f"{rng.choice(STREETS)} {rng.randint(1, 120)}, 0{rng.randint(100, 999)} Oslo",
                # Two in three on the demo fastlege's list, NHN's first test patient included.
                fastlege_hpr_number=fastlege_hpr if index % 3 != 2 else "",
            )
            patients.append(patient)
        # Privacy choices and protected addresses on fixed patients, so the demo shows each.
        now = timezone.now()
        choices = [
            (3, PrivacyChoiceKind.RESERVATION, ""),
            (4, PrivacyChoiceKind.RESTRICTION, ""),
            (5, PrivacyChoiceKind.BLOCKED_CLINICIAN, fastlege_hpr),
            (6, PrivacyChoiceKind.BLOCKED_CLINICIAN, legevakt_hpr),
        ]
        for index, kind, hpr in choices:
            PrivacyChoice.objects.create(
                patient=patients[index],
                kind=kind,
                blocked_hpr_number=hpr,
                reference=f"DEMO-{index:04d}",
                reason="Pasientens ønske (syntetiske testdata)",
                registered_at=now,
            )
        for index, protection in ((7, AddressProtection.FORTROLIG), (8, AddressProtection.STRENGT_FORTROLIG)):
            patients[index].address_protection = protection
            patients[index].save(update_fields=["address_protection"])
        return patients

    def _documents(self, patients: list[Patient], orgs: dict[str, Organisation], low: int, high: int) -> int:
        rng = random.Random(8)
        # The remote source's documents stay at the source (seed_remote_demo).
        sources = list(
            DocumentSource.objects.select_related("organisation")
            .exclude(organisation__orgnr=REMOTE_SOURCE_ORGNR)
            .order_by("organisation__orgnr")
        )
        types = demo_content.document_types()
        categories = list(DocumentCategory.values)
        today = timezone.localdate()
        count = 0
        for p_index, patient in enumerate(patients):
            n_docs = rng.randint(low, high)
            for d_index in range(n_docs):
                # Every category at least once per patient, the rest at random.
                category = categories[d_index] if d_index < len(categories) else rng.choice(categories)
                type_code, type_name = rng.choice(types[category])
                kind = demo_content.document_kind(category, type_name)
                drawn = rng.choice(sources)
                drawn_department = rng.choice(DEPARTMENTS[drawn.organisation.orgnr])
                # The drawn source if it writes this kind (no CT at a legevakt), else the
                # next one that does; no draw of its own, so the stream stays as it was.
                source, (department, resh) = _fitting(sources, drawn, kind, drawn_department)
                # Recent documents more often, so the windows leave something to show.
                age_days = int(rng.triangular(0, 8 * 365, 200))
                service_date = today - datetime.timedelta(days=age_days)
                seed = p_index * 1000 + d_index
                author = pick_author(kind, source.organisation.orgnr, rng.randrange(AUTHOR_DRAW))
                spec = demo_content.DemoDocumentSpec(
                    category=category,
                    type_code=type_code,
                    type_name=type_name,
                    title=demo_content.make_title(category, type_name, seed),
                    service_date=service_date,
                    author=author.display,
                    # A referral is the fastlege's letter, kept by the hospital that received it.
                    institution=author.office or source.organisation.name,
                    department="" if author.office else department,
                    recipient=f"{department}, {source.organisation.name}" if author.office else "",
                    patient_name=patient.name,
                    patient_birth_date=patient.birth_date,
                    seed=seed,
                )
                as_xml = d_index % 5 == 4
                # Some documents come wrapped in CDA, as a source's XDS/MHD registry has them:
                # every other XML one (KITH body) and some PDFs (base64 PDF body).
                cda_body = "kith" if as_xml and p_index % 2 == 0 else "pdf" if d_index % 5 == 2 else ""
                if cda_body:
                    data = demo_content.render_cda(spec, cda_body)
                    content_type = "application/hl7-v3+xml"
                else:
                    data = demo_content.render_xml(spec) if as_xml else demo_content.render_pdf(spec)
                    content_type = "application/xml" if as_xml else "application/pdf"
                # A few blocked (NORS) documents for the "sperret" count.
                # The first document is an epikrise (no window), so it always counts.
                blocked = p_index % 4 == 1 and d_index == 0
                doc = DocumentReference.objects.create(
                    source=source,
                    patient=patient,
                    category=category,
                    type_code=type_code,
                    type_name=type_name,
                    title=spec.title,
                    service_date=service_date,
                    author=spec.author,
                    institution_name=source.organisation.name,
                    institution_orgnr=source.organisation.orgnr,
                    department=department,
                    department_resh_id=resh,
                    confidentiality_code=ConfidentialityCode.NORS if blocked else ConfidentialityCode.NORMAL,
                    content_type=content_type,
                    size=len(data),
                )
                DocumentContent.objects.create(document=doc, data=data)
                count += 1
        return count
