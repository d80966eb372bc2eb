"""The benchmark's data set: the demo seed, scale patients with 20 documents each, one
patient with 1,000 documents, and the bench patient whose list and two documents (2 KB and
200 KB) are measured.

The local store keeps each document's bytes in a row of its own (DocumentContent, a
one-to-one bytea), so bytes cannot be shared between documents: 200,000 documents of
50–500 KB would be some 55 GB. Only the documents the benchmark opens or may open carry
bytes (the bench patient's); the others are metadata rows whose `size` is that of one of
the distinct demo PDFs, which is all the list reads of them. Idempotent: a patient already
there is kept, so a larger profile adds only what is missing.
"""

from __future__ import annotations

import datetime
import random
import time
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.utils import timezone

from bench import dataset, pdfs
from pjd_portal.auditlog.chain import CHAINS, GENESIS
from pjd_portal.auditlog.models import AuditChainHead
from pjd_portal.documents import demo_content
from pjd_portal.documents.management.commands.seed_demo import (
    GIVEN_F,
    GIVEN_M,
    REMOTE_SOURCE_ORGNR,
    STREETS,
    fitting_department,
    pick_author,
)
from pjd_portal.documents.models import (
    DocumentCategory,
    DocumentContent,
    DocumentReference,
    DocumentSource,
)
from pjd_portal.patients.models import Gender, Patient
from pjd_portal.patients.national_id import NationalIdKind

BATCH_PATIENTS = 500  # a transaction per batch: an interrupted build keeps what it made


class _Documents:
    """Metadata rows drawn at random (seeded), each the size of one of the distinct PDFs."""

    def __init__(self, sizes: list[int]) -> None:
        self.sources = list(
            DocumentSource.objects.select_related("organisation")
            .exclude(organisation__orgnr=REMOTE_SOURCE_ORGNR)
            .order_by("organisation__orgnr")
        )
        self.types = demo_content.document_types()
        self.categories = list(DocumentCategory.values)
        self.sizes = sizes
        self.today = timezone.localdate()

    def draw(self, rng: random.Random, patient: Patient, d_index: int) -> DocumentReference:
        category = self.categories[d_index % len(self.categories)]
        type_code, type_name = rng.choice(self.types[category])
        kind = demo_content.document_kind(category, type_name)
        start = rng.randrange(len(self.sources))
        for step in range(len(self.sources)):
            source = self.sources[(start + step) % len(self.sources)]
            orgnr = source.organisation.orgnr
            department = fitting_department(orgnr, kind)
            if department is not None:
                break
        else:
            raise ValueError(f"no source writes {kind}")
        age_days = int(rng.triangular(0, 8 * 365, 200))
        return DocumentReference(
            source=source,
            patient=patient,
            category=category,
            type_code=type_code,
            type_name=type_name,
            title=demo_content.make_title(category, type_name, rng.randrange(1_000_000)),
            service_date=self.today - datetime.timedelta(days=age_days),
            author=pick_author(kind, orgnr, rng.randrange(5)).display,
            institution_name=source.organisation.name,
            institution_orgnr=orgnr,
            department=department[0],
            department_resh_id=department[1],
            content_type="application/pdf",
            size=rng.choice(self.sizes),
        )


def _patient(national_id: str, birth: datetime.date, rng: random.Random, given: str = "") -> Patient:
    female = rng.random() < 0.5
    return Patient(
        national_id=national_id,
        national_id_kind=NationalIdKind.SYNTHETIC,
        given_name=given or rng.choice(GIVEN_F if female else GIVEN_M),
        family_name=dataset.BENCH_FAMILY,
        birth_date=birth,
        gender=Gender.FEMALE if female else Gender.MALE,
        address=f"{rng.choice(STREETS)} {rng.randint(1, 120)}, 0{rng.randint(100, 999)} Oslo",
        fastlege_hpr_number=dataset.BENCH_HPR,
    )


class Command(BaseCommand):
    help = "Build the benchmark's data set (bench/): the demo seed plus scale patients and documents."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--patients", type=int, default=10_000, help="scale patients, 20 documents each")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        call_command("seed_demo", stdout=self.stdout)
        # Every request chain's head row, as a database in use has them: a fresh one makes
        # each on its first event (two statements more), so the first lookups' counts would
        # depend on the database's age rather than on the code.
        AuditChainHead.objects.bulk_create(
            [AuditChainHead(chain=chain, seq=0, last_hash=GENESIS) for chain in range(CHAINS)],
            ignore_conflicts=True,
        )
        distinct = [
            pdfs.demo_pdf(i, "Kari Benkmarksen", dataset.BENCH_BIRTH) for i in range(len(pdfs.SIZES_KB))
        ]
        documents = _Documents([len(data) for *_, data in distinct])
        taken = set(Patient.objects.values_list("national_id", flat=True))
        made = self._bench_patient(documents, distinct, taken)
        made += self._heavy_patient(documents, taken)
        wanted = [(i, dataset.scale_birth(i)) for i in range(options["patients"])]
        missing = []
        for index, birth in wanted:
            national_id = dataset.synthetic_id(birth)
            if national_id not in taken:
                missing.append((index, national_id, birth))
        for start in range(0, len(missing), BATCH_PATIENTS):
            made += self._scale_batch(documents, missing[start : start + BATCH_PATIENTS])
        if made and connection.vendor == "postgresql":
            # Statistics as autovacuum would have them on a database in use: without them
            # the planner takes a 200,000-row index scan for a patient's 20 documents.
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        self.stdout.write(
            f"Bench data set: {options['patients']} scale patients wanted, {len(missing)} added, "
            f"{made} documents added, in {time.monotonic() - started:.0f} s."
        )

    @transaction.atomic
    def _scale_batch(self, documents: _Documents, batch: list[tuple[int, str, datetime.date]]) -> int:
        patients = Patient.objects.bulk_create(
            [_patient(national_id, birth, random.Random(index)) for index, national_id, birth in batch]
        )
        rows = []
        for (index, _id, _birth), patient in zip(batch, patients, strict=True):
            rng = random.Random(f"docs:{index}")
            rows += [documents.draw(rng, patient, d) for d in range(dataset.DOCUMENTS_PER_PATIENT)]
        DocumentReference.objects.bulk_create(rows, batch_size=2000)
        return len(rows)

    @transaction.atomic
    def _heavy_patient(self, documents: _Documents, taken: set[str]) -> int:
        national_id = dataset.synthetic_id(dataset.HEAVY_BIRTH)
        if national_id in taken:
            return 0
        patient = _patient(national_id, dataset.HEAVY_BIRTH, random.Random("heavy"), given="Tusen")
        patient.save()
        taken.add(national_id)
        rng = random.Random("heavy-docs")
        rows = [documents.draw(rng, patient, d) for d in range(dataset.HEAVY_DOCUMENTS)]
        DocumentReference.objects.bulk_create(rows, batch_size=2000)
        return len(rows)

    @transaction.atomic
    def _bench_patient(
        self, documents: _Documents, distinct: list[tuple[str, str, str, bytes]], taken: set[str]
    ) -> int:
        """The measured patient: 20 documents with their bytes (the distinct PDFs in turn),
        and exactly one 2 KB and one 200 KB PDF, the newest two, so they head the list."""

        national_id = dataset.synthetic_id(dataset.BENCH_BIRTH)
        if national_id in taken:
            return 0
        patient = _patient(national_id, dataset.BENCH_BIRTH, random.Random("bench"), given="Kari")
        patient.save()
        taken.add(national_id)
        rng = random.Random("bench-docs")
        rows: list[tuple[DocumentReference, bytes]] = []
        for d_index in range(dataset.DOCUMENTS_PER_PATIENT):
            doc = documents.draw(rng, patient, d_index)
            category, type_code, type_name, data = distinct[d_index % len(distinct)]
            doc.category, doc.type_code, doc.type_name, doc.size = category, type_code, type_name, len(data)
            doc.title = f"{type_name} ({d_index + 1})"
            rows.append((doc, data))
        for title, category, target, age in (
            (dataset.TITLE_SMALL, DocumentCategory.PROVESVAR, pdfs.OPEN_SMALL, 0),
            (dataset.TITLE_LARGE, DocumentCategory.EPIKRISE, pdfs.OPEN_LARGE, 1),
        ):
            doc = documents.draw(rng, patient, 0)
            type_code, type_name = demo_content.document_types()[category][0]
            data = pdfs.grown_to(pdfs.small_pdf(title), target, seed=target)
            doc.category, doc.type_code, doc.type_name, doc.title = category, type_code, type_name, title
            doc.size, doc.service_date = len(data), documents.today - datetime.timedelta(days=age)
            rows.append((doc, data))
        made = DocumentReference.objects.bulk_create([doc for doc, _ in rows])
        DocumentContent.objects.bulk_create(
            [DocumentContent(document=doc, data=data) for doc, (_, data) in zip(made, rows, strict=True)]
        )
        return len(made)
