"""The demo's PDFs look like real ones: well-formed, several pages for an epikrise, the
sizes real clinical PDFs have, a signature block, and authors and institutions that fit
the document (no CT at a legevakt, an epikrise by a doctor, a referral by a fastlege).

The fit is checked against the seeded data with patterns of its own, not with the
seeders' tables, so a seeder that puts a document in the wrong place fails here.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import re
import zlib
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from pjd_portal.accounts.models import OrganisationKind
from pjd_portal.documents import demo_content
from pjd_portal.documents.models import DocumentReference

KB = 1024
ALL_TYPES = [
    (category, type_code, type_name)
    for category, types in demo_content.document_types().items()
    for type_code, type_name in types
]
SEEDS = (0, 1, 2, 3, 5, 7, 13, 14, 1001, 2024)
DOCTOR_TITLES = ("Overlege ", "LIS-lege ", "Lege ", "Legevaktslege ", "Fastlege ")
LAB_DEPARTMENT = re.compile(r"biokjemi|Laboratori|mikrobiologi|patologi|Diagnostisk klinikk|Legevakten")
IMAGING_DEPARTMENT = re.compile(r"Radiologisk|bildediagnostikk|Diagnostisk klinikk")
CLINICAL_DEPARTMENT = re.compile(r"Medisinsk (klinikk|avdeling)|Kirurgisk|Indremedisinsk|hjertemedisin")


def make_spec(category: str, type_code: str, type_name: str, seed: int) -> demo_content.DemoDocumentSpec:
    return demo_content.DemoDocumentSpec(
        category=category,
        type_code=type_code,
        type_name=type_name,
        title=demo_content.make_title(category, type_name, seed),
        service_date=datetime.date(2024, 3, 5) + datetime.timedelta(days=seed % 40),
        author="Overlege Anne Berg",
        institution="St. Olavs hospital HF",
        department="Medisinsk avdeling",
        patient_name="Åse Ørnulf Ærbø",
        patient_birth_date=datetime.date(1948, 4, 3),
        seed=seed,
    )


def pdf_structure(data: bytes) -> int:
    """Check a PDF's skeleton the way a reader walks it and return its page count.

    pypdf is not among the dependencies, so this reads the classic cross-reference table
    fpdf2 writes: `startxref` must point at it, every in-use entry at its `n 0 obj`, the
    trailer's /Size must match, and the page tree's /Count must equal the page objects.
    """

    assert data.startswith(b"%PDF-1."), data[:8]
    assert data.rstrip().endswith(b"%%EOF")
    startxref = int(re.findall(rb"startxref\s+(\d+)\s+%%EOF", data)[-1])
    assert data[startxref : startxref + 4] == b"xref"
    header = re.match(rb"xref\s+0 (\d+)\s+", data[startxref:])
    assert header is not None
    size = int(header.group(1))
    entries = re.findall(rb"(\d{10}) (\d{5}) ([nf])", data[startxref + header.end() :])[:size]
    assert len(entries) == size
    for number, (offset, _generation, use) in enumerate(entries):
        if use == b"n":
            at = int(offset)
            assert re.match(rb"%d 0 obj" % number, data[at : at + 20]), (number, data[at : at + 20])
    trailer = data[startxref:].split(b"trailer", 1)[1]
    assert int(re.search(rb"/Size (\d+)", trailer).group(1)) == size  # type: ignore[union-attr]
    assert re.search(rb"/Root \d+ 0 R", trailer)
    pages = len(re.findall(rb"/Type /Page\b", data))
    objects = re.findall(rb"\d+ 0 obj(.*?)endobj", data, re.S)
    counts = [re.findall(rb"/Count (\d+)", o) for o in objects if re.search(rb"/Type /Pages\b", o)]
    assert counts == [[str(pages).encode()]], (counts, pages)
    return pages


def flate_streams(data: bytes) -> list[bytes]:
    """The FlateDecode streams, decompressed, each cut by its /Length: compressed bytes may
    end in a CR or LF, which an `endstream` pattern would take for the line end."""

    streams = []
    for match in re.finditer(rb"<<((?:(?!>>\s*stream).)*?)>>\s*stream\r?\n", data, re.S):
        dictionary = match.group(1)
        length = re.search(rb"/Length (\d+)", dictionary)
        if length is None or b"/FlateDecode" not in dictionary:
            continue  # not a stream we can read: the images are DCTDecode
        streams.append(zlib.decompress(data[match.end() : match.end() + int(length.group(1))]))
    return streams


def pdf_text(data: bytes) -> str:
    """The text shown (`(...) Tj`) in the decompressed content streams, one string per page."""

    shown = []
    for content in flate_streams(data):
        shown.extend(re.findall(rb"\(((?:[^()\\]|\\.)*)\) Tj", content))
    text = b"\n".join(shown).decode("cp1252")
    return text.replace("\\(", "(").replace("\\)", ")").replace("\\\\", "\\")


@pytest.mark.parametrize(("category", "type_code", "type_name"), ALL_TYPES)
def test_every_type_renders_a_well_formed_pdf_of_a_real_size(category, type_code, type_name):
    kind = demo_content.document_kind(category, type_name)
    for seed in SEEDS:
        data = demo_content.render_pdf(make_spec(category, type_code, type_name, seed))
        pages = pdf_structure(data)
        assert 50 * KB <= len(data) <= 400 * KB, (seed, len(data))
        if kind == "epikrise":
            assert 2 <= pages <= 5, (seed, pages)
        else:
            assert 1 <= pages <= 3, (seed, pages)
        # The letterhead on every page is one image, embedded once; radiology adds a key image.
        assert data.count(b"/Filter /DCTDecode") == (2 if category == "E00-1" else 1)
        # fpdf2 fills in the page total apart from the rest of the line.
        assert re.findall(r"Side (\d+) av \s*(\d+)", pdf_text(data))[-1] == (str(pages), str(pages))


def test_an_epikrise_has_the_sections_a_discharge_letter_has():
    text = pdf_text(demo_content.render_pdf(make_spec("A00-1", "A03-2", "Epikrise", 3)))
    for heading in (
        "Diagnoser",
        "Innleggelsesårsak",
        "Funn ved innkomst",
        "Supplerende undersøkelser",
        "Behandling og forløp",
        "Legemidler ved utreise",
        "Videre plan",
    ):
        assert f"\n{heading}\n" in text, heading
    assert re.search(r"Hoveddiagnose: .+ \([A-Z]\d\d(\.\d)?\)", text)
    assert re.search(r"\nDag 2 \(\d\d\.\d\d\.\d{4}\): ", text)


def test_results_and_radiology_reports_have_their_parts():
    lab = pdf_text(demo_content.render_pdf(make_spec("C00-1", "C01-1", "Prøvesvar medisinsk biokjemi", 2)))
    assert "\nAnalyse\nVerdi\n" in lab and "\nReferanse\n" in lab and "Prøvenummer:" in lab
    assert re.search(r"\n(HbA1c|Hemoglobin|Natrium|TSH)\n\d+(,\d+)?\n", lab)
    for seed in SEEDS:
        report = pdf_text(demo_content.render_pdf(make_spec("E00-1", "E01-1", "Radiologibeskrivelse", seed)))
        for heading in ("Undersøkelse", "Klinisk problemstilling", "Beskrivelse", "Konklusjon"):
            assert f"\n{heading}\n" in report, (seed, heading)
        assert "Nøkkelbilde" in report


@pytest.mark.parametrize(("category", "type_code", "type_name"), ALL_TYPES)
def test_every_pdf_ends_with_a_signature_block(category, type_code, type_name):
    spec = make_spec(category, type_code, type_name, 5)
    text = pdf_text(demo_content.render_pdf(spec))
    block = text[text.rindex("\nOverlege Anne Berg\n") :]
    assert "\nSpesialist i indremedisin\n" in block
    assert re.search(r"\nHPR-nr\. 98\d{7}\n", block)
    assert "\nMedisinsk avdeling, St. Olavs hospital HF\n" in block
    assert re.search(r"\nElektronisk signert \d\d\.\d\d\.2024 kl\. \d\d:\d\d\n", block)


def test_the_hpr_number_is_the_authors_own_and_synthetic():
    assert demo_content.synthetic_hpr("Overlege Anne Berg") == demo_content.synthetic_hpr(
        "Overlege Anne Berg"
    )
    numbers = {demo_content.synthetic_hpr(a.display) for a in demo_content.AUTHOR_ROSTER}
    assert len(numbers) == len(demo_content.AUTHOR_ROSTER)
    # Not the dev identity provider's (9100000xx), which the policy matches blocks against.
    assert all(re.fullmatch(r"98\d{7}", n) for n in numbers)


def test_documents_differ_by_patient_and_date_though_images_are_shared():
    spec = make_spec("A00-1", "A03-2", "Epikrise", 3)
    base = demo_content.render_pdf(spec)
    other_patient = demo_content.render_pdf(dataclasses.replace(spec, patient_name="Ola Testesen"))
    later = demo_content.render_pdf(dataclasses.replace(spec, service_date=datetime.date(2024, 5, 1)))
    assert len({base, other_patient, later}) == 3
    assert "Ola Testesen" in pdf_text(other_patient) and "Ola Testesen" not in pdf_text(base)
    assert "01.05.2024" in pdf_text(later)


def test_a_referral_is_a_fastleges_letter_to_the_hospital():
    spec = dataclasses.replace(
        make_spec("I00-1", "I01-1", "Henvisning", 4),
        author="Fastlege Kari Nilsen",
        institution="Storgata legekontor",
        department="",
        recipient="Medisinsk klinikk, Oslo universitetssykehus HF",
    )
    text = pdf_text(demo_content.render_pdf(spec))
    assert "Avsender:\nFastlege Kari Nilsen, Storgata legekontor" in text
    assert "Mottaker:\nMedisinsk klinikk, Oslo universitetssykehus HF" in text
    assert "\nSpesialist i allmennmedisin\n" in text


def test_the_roster_only_gives_fitting_authors():
    assert demo_content.authors_for("radiologi", demo_content.LEGEVAKT) == ()
    assert demo_content.authors_for("epikrise", demo_content.LEGEVAKT) == ()
    for author in demo_content.authors_for("epikrise"):
        assert author.display.startswith(DOCTOR_TITLES)
    for author in demo_content.authors_for("henvisning", demo_content.HOSPITAL):
        assert author.title == "Fastlege" and re.search(r"lege(kontor|senter)$", author.office)
    for author in demo_content.authors_for("radiologi"):
        assert "radiologi" in author.qualification


def _assert_fits(
    *, category: str, type_name: str, author: str, department: str, source_kind: str, pdf: bytes | None
) -> None:
    """One document's author and place fit its category (patterns, not the seeders' tables)."""

    roster = demo_content.author_by_display(author)
    assert roster is not None, author
    where = (category, type_name, author, department)
    if category == "E00-1":
        assert source_kind == OrganisationKind.HELSEFORETAK, where
        assert IMAGING_DEPARTMENT.search(department), where
        assert re.search(r"radiologi|nukleærmedisin", roster.qualification), where
    elif category == "A00-1":
        assert source_kind == OrganisationKind.HELSEFORETAK, where
        assert author.startswith(("Overlege ", "LIS-lege ")), where  # a doctor
        assert CLINICAL_DEPARTMENT.search(department), where
    elif category == "C00-1":
        assert LAB_DEPARTMENT.search(department), where
        assert author.startswith("Bioingeniør ") or re.search(
            r"medisinsk biokjemi|mikrobiologi|patologi", roster.qualification
        ), where
        if "mikrobiologi" in type_name or "patologi" in type_name:
            assert type_name.rsplit(maxsplit=1)[-1] in roster.qualification, where
    elif category == "D00-1":
        assert author.startswith(DOCTOR_TITLES), where
    elif type_name == "Henvisning":
        assert author.startswith("Fastlege "), where
        assert source_kind == OrganisationKind.HELSEFORETAK and CLINICAL_DEPARTMENT.search(department), where
    else:
        assert author.startswith(("Overlege ", "LIS-lege ")), where
    if source_kind == OrganisationKind.LEGEVAKT:
        assert type_name in {"EKG", "Prøvesvar medisinsk biokjemi"}, where
    if pdf is not None:
        text = pdf_text(pdf)
        assert f"\n{author}\n" in text and "HPR-nr. 98" in text, where
        if type_name == "Henvisning":
            assert re.search(r"Avsender:\nFastlege .+, .+lege(kontor|senter)", text), where
            assert f"Mottaker:\n{department}, " in text, where


@pytest.mark.django_db
def test_seeded_documents_are_written_by_who_writes_them_where_they_are_written():
    call_command("seed_demo", patients=8, min_documents=10, max_documents=20, stdout=StringIO())
    documents = DocumentReference.objects.select_related("source__organisation", "content")
    assert documents.count() >= 110
    seen = set()
    for doc in documents:
        pdf = bytes(doc.content.data) if doc.content_type == "application/pdf" else None
        _assert_fits(
            category=doc.category,
            type_name=doc.type_name,
            author=doc.author,
            department=doc.department,
            source_kind=doc.source.organisation.kind,
            pdf=pdf,
        )
        if pdf is not None:
            assert 50 * KB <= len(pdf) <= 400 * KB
            seen.add(doc.category)
    assert seen == {"A00-1", "C00-1", "D00-1", "E00-1", "I00-1"}
    # The legevakt still has documents of its own: its EKGs and rapid tests.
    assert documents.filter(source__organisation__kind=OrganisationKind.LEGEVAKT).exists()


@pytest.mark.django_db
def test_the_remote_sources_documents_fit_too(tmp_path):
    call_command("seed_demo", patients=6, min_documents=6, max_documents=8, stdout=StringIO())
    path = tmp_path / "seed.json"
    call_command("seed_remote_demo", str(path), stdout=StringIO())
    bundle = json.loads(path.read_text(encoding="utf-8"))
    entries = [e["resource"] for e in bundle["entry"]]
    binaries = {
        e["fullUrl"]: e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Binary"
    }
    references: list[dict[str, Any]] = [r for r in entries if r["resourceType"] == "DocumentReference"]
    assert len(references) >= 272
    for reference in references[:60]:  # the first patients' and a good stretch of the 260
        binary = binaries[reference["content"][0]["attachment"]["url"]]
        data = base64.b64decode(binary["data"])
        is_pdf = binary["contentType"] == "application/pdf"
        _assert_fits(
            category=reference["category"][0]["coding"][0]["code"],
            type_name=reference["type"]["coding"][0]["display"],
            author=reference["author"][0]["display"],
            department=reference["context"]["practiceSetting"]["text"],
            source_kind=OrganisationKind.HELSEFORETAK,
            pdf=data if is_pdf else None,
        )
        if is_pdf:
            assert 50 * KB <= len(data) <= 400 * KB
