"""Write the demo's remote document source: St. Olavs hospital HF's documents for the demo
patients, as a FHIR batch Bundle for the test FHIR server (`FHIR_SEED_FILE`), which
`make run` starts beside the portal and configures as that organisation's MHD source.

Synthetic only. NHN's first test patient (13116900216) gets a dozen documents there, one of
them blocked (NORS) and one whose reference names no content type; the second
(12119000465) gets 260, so that the portal pages through the source; the other demo
patients a few each. Deterministic: the same database gives the same documents.
"""

from __future__ import annotations

import datetime
import json
import random
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from pjd_portal.documents import demo_content, demo_remote
from pjd_portal.documents.management.commands.seed_demo import (
    NHN_TEST_PATIENTS,
    REMOTE_SOURCE_ORGNR,
    fitting_department,
    pick_author,
)
from pjd_portal.documents.models import DocumentCategory, DocumentSource
from pjd_portal.patients.models import Patient

MANY = 260  # more than two pages of the portal's default _count (100)
# The authors (demo_content.authors_for) fit the document kind. The seeder once chose them
# from per-category lists of these lengths; it still draws a number below the same bound,
# so the random stream, and every later draw (counts, dates), stays as it was.
AUTHOR_DRAW = {"A00-1": 3, "C00-1": 2, "D00-1": 2, "E00-1": 2, "I00-1": 2}


class Command(BaseCommand):
    help = "Write the demo's remote MHD source data (a FHIR batch Bundle) for the test FHIR server."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("path", help="where to write the Bundle (JSON)")
        parser.add_argument("--force", action="store_true", help="write it even if the file exists")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        if path.exists() and not options["force"]:
            self.stdout.write(f"{path} exists; nothing changed.")
            return
        source = (
            DocumentSource.objects.select_related("organisation")
            .filter(organisation__orgnr=REMOTE_SOURCE_ORGNR)
            .first()
        )
        if source is None:
            raise CommandError("Run seed_demo first: the remote source's organisation is not there.")
        patients = list(Patient.objects.order_by("id"))
        documents = self._documents(source, patients)
        bundle = demo_remote.seed_bundle(
            [
                demo_remote.SeedPatient(p.national_id, p.given_name, p.family_name, p.birth_date)
                for p in patients
            ],
            documents,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(bundle), encoding="utf-8")
        self.stdout.write(
            f"Wrote {len(documents)} documents of {source.name} for {len(patients)} patients to {path}."
        )

    def _documents(self, source: DocumentSource, patients: list[Patient]) -> list[demo_remote.SeedDocument]:
        rng = random.Random(20261202)
        types = demo_content.document_types()
        categories = list(DocumentCategory.values)
        today = timezone.localdate()
        documents = []
        for p_index, patient in enumerate(patients):
            if patient.national_id == NHN_TEST_PATIENTS[0]:
                count = 12
            elif patient.national_id == NHN_TEST_PATIENTS[1]:
                count = MANY
            else:
                count = rng.randint(0, 4)
            for d_index in range(count):
                category = categories[d_index % len(categories)] if d_index < 10 else rng.choice(categories)
                type_code, type_name = rng.choice(types[category])
                kind = demo_content.document_kind(category, type_name)
                fitting = fitting_department(REMOTE_SOURCE_ORGNR, kind)
                if fitting is None:
                    raise CommandError(f"{source.name} has no department for {kind}")
                department = fitting[0]
                # The first ones recent, so every category shows inside its window.
                age = d_index * 9 if d_index < 10 else int(rng.triangular(0, 6 * 365, 120))
                service_date = today - datetime.timedelta(days=age)
                seed = 500_000 + p_index * 1000 + d_index
                author = pick_author(kind, REMOTE_SOURCE_ORGNR, rng.randrange(AUTHOR_DRAW[category]))
                spec = demo_content.DemoDocumentSpec(
                    category=category,
                    type_code=type_code,
                    type_name=type_name,
                    title=demo_content.make_title(category, type_name, seed),
                    service_date=service_date,
                    author=author.display,
                    # A referral is the fastlege's letter, kept by the hospital that received it.
                    institution=author.office or source.name,
                    department="" if author.office else department,
                    recipient=f"{department}, {source.name}" if author.office else "",
                    patient_name=patient.name,
                    patient_birth_date=patient.birth_date,
                    seed=seed,
                )
                as_xml = d_index % 4 == 3
                data = demo_content.render_xml(spec) if as_xml else demo_content.render_pdf(spec)
                content_type = "application/xml" if as_xml else "application/pdf"
                first_patient = patient.national_id == NHN_TEST_PATIENTS[0]
                documents.append(
                    demo_remote.SeedDocument(
                        national_id=patient.national_id,
                        category=category,
                        type_code=type_code,
                        type_name=type_name,
                        title=spec.title,
                        service_date=service_date,
                        author=spec.author,
                        custodian_name=source.name,
                        custodian_orgnr=REMOTE_SOURCE_ORGNR,
                        department=department,
                        data=data,
                        # A reference that names no content type: the portal asks for what
                        # it can show and takes a PDF.
                        content_type="" if first_patient and d_index == 5 else content_type,
                        served_type=content_type,
                        confidentiality="NORS" if first_patient and d_index == 0 else "N",
                    )
                )
        return documents
