"""Issue 13 item 5, "read without losing the list": the viewer beside the list (the same
decision as an open, no second open event), the PDF's file name, the list's title search
and date range, institution and department as columns, and dd.mm.yyyy dates."""

from __future__ import annotations

import datetime
import re
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from pjd_portal.clinic import opening, selectors
from pjd_portal.clinic.listing import merged_rows
from pjd_portal.documents.models import ConfidentialityCode, DocumentReference
from pjd_portal.documents.sources.base import RemoteDocument
from tests.builders import (
    LIST_PATIENT_ID,
    World,
    add_document,
    comparable,
    events,
    lookup_and_attest,
    matched,
)

pytestmark = pytest.mark.django_db

ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
XML = b'<?xml version="1.0"?><Dokument><Tittel>Svarrapport</Tittel><Innhold><Avsnitt overskrift="Funn">Normale funn.</Avsnitt></Innhold></Dokument>'


def _dated(doc: DocumentReference, day: datetime.date) -> DocumentReference:
    doc.service_date = day
    doc.save(update_fields=["service_date"])
    return doc


def test_the_viewer_shows_the_description_and_the_way_back_to_the_list_as_it_was(
    as_fastlege: Client, world: World
) -> None:
    doc = add_document(world, title="Epikrise etter innleggelse", days_ago=12)
    handle = lookup_and_attest(as_fastlege)
    list_page = as_fastlege.get(f"/pasient/{handle}/", {"sort": "title", "size": "10", "title": "epikrise"})
    link = matched(
        r'<a class="ds-link" href="([^"]+)" hx-get="[^"]+" hx-target="#document-viewer"',
        list_page.content.decode(),
    )
    link = link.replace("&amp;", "&")
    assert link.startswith(f"/pasient/{handle}/dokument/{doc.document_id}/vis/?")
    assert 'target="_blank"' not in matched(
        r'(<a [^>]*data-testid="open-document"[^>]*>)', list_page.content.decode()
    )
    before = len(events())
    response = as_fastlege.get(link + "&v=made-up&wait=1")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="patient-banner"' in html and "Ingrid Testesen" in html
    assert "Epikrise etter innleggelse" in html
    assert doc.service_date.strftime("%d.%m.%Y") in html
    assert world.hospital.name in html and "Medisinsk klinikk" in html and "Overlege Anne Berg" in html
    back = matched(r'href="([^"]+)" data-testid="back-to-list"', html).replace("&amp;", "&")
    assert urlsplit(back).path == f"/pasient/{handle}/"
    assert parse_qs(urlsplit(back).query) == {"sort": ["title"], "size": ["10"], "title": ["epikrise"]}
    frame = matched(r'<iframe [^>]*src="([^"]+)"', html)
    assert frame == f"/pasient/{handle}/dokument/{doc.document_id}/"
    # The viewer logs what it shows (the description), committed; the framed PDF's request
    # is the open, once.
    [viewed] = events("document_viewed")
    assert (viewed.document, viewed.outcome, viewed.patient) == (doc, "granted", world.patient)
    assert len(events()) == before + 1 and not events("document_open")
    pdf = as_fastlege.get(frame)
    assert b"".join(pdf.streaming_content).startswith(b"%PDF-")  # type: ignore[attr-defined]
    assert pdf["Content-Security-Policy"].startswith("sandbox;")
    assert "frame-ancestors 'self'" in pdf["Content-Security-Policy"]
    assert pdf["X-Frame-Options"] == "SAMEORIGIN"
    [opened] = events("document_open")
    assert opened.document == doc
    assert not ISO_DATE.search(html) and LIST_PATIENT_ID not in html


def test_with_htmx_the_viewer_is_a_pane_not_a_page(as_fastlege: Client, world: World) -> None:
    doc = add_document(world)
    handle = lookup_and_attest(as_fastlege)
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert 'id="document-viewer"' in page  # where the pane goes, above the list
    response = as_fastlege.get(
        f"/pasient/{handle}/dokument/{doc.document_id}/vis/", headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith("<article") and "<html" not in html
    assert 'data-testid="back-to-list"' in html and 'data-testid="viewer-frame"' in html


def test_an_xml_document_is_rendered_in_the_viewer_and_that_is_its_one_open(
    as_fastlege: Client, world: World
) -> None:
    doc = add_document(world, content_type="application/xml", data=XML)
    handle = lookup_and_attest(as_fastlege)
    html = as_fastlege.get(
        f"/pasient/{handle}/dokument/{doc.document_id}/vis/", {"page": "2"}
    ).content.decode()
    assert "Normale funn." in html and 'data-testid="back-to-list"' in html and "<iframe" not in html
    assert f'href="/pasient/{handle}/?page=2" data-testid="back-to-list"' in html
    [opened] = events("document_open")
    assert opened.document == doc and opened.outcome == "granted"


def test_a_refused_document_is_the_same_404_as_an_unknown_one_and_both_are_logged(
    as_fastlege: Client, world: World
) -> None:
    blocked = add_document(world, title="Sperret notat", confidentiality=ConfidentialityCode.NORS)
    old = add_document(world, title="Gammelt prøvesvar", category="C00-1", days_ago=500)
    foreign = add_document(world, world.other_patient, title="Annen pasient")
    handle = lookup_and_attest(as_fastlege)
    answers = [
        as_fastlege.get(f"/pasient/{handle}/dokument/{d}/vis/")
        for d in (blocked.document_id, old.document_id, foreign.document_id, uuid.uuid4())
    ]
    assert {r.status_code for r in answers} == {404}
    assert len({comparable(r) for r in answers}) == 1
    for title in ("Sperret notat", "Gammelt prøvesvar", "Annen pasient"):
        assert all(title not in r.content.decode() for r in answers)
    reasons = [e.reason_code for e in events("access_denied")]
    assert reasons == ["document_blocked", "outside_window", "document_other_patient", "unknown_document"]
    assert not events("document_open")


def test_the_pdf_is_named_by_date_category_and_institution_never_the_patient(
    as_fastlege: Client, world: World
) -> None:
    doc = add_document(world)
    DocumentReference.objects.filter(pk=doc.pk).update(
        institution_name="Sørlandet sykehus HF", service_date=datetime.date(2026, 3, 20), category="C00-1"
    )
    handle = lookup_and_attest(as_fastlege)
    response = as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    assert response.status_code == 200
    disposition = response["Content-Disposition"]
    assert disposition == (
        'inline; filename="2026-03-20-provesvar-sorlandet-sykehus.pdf"; '
        "filename*=UTF-8''2026-03-20-pr%C3%B8vesvar-s%C3%B8rlandet-sykehus.pdf"
    )
    assert (
        LIST_PATIENT_ID not in disposition and "Testesen" not in disposition and "Ingrid" not in disposition
    )


@pytest.mark.parametrize(
    ("day", "category", "institution", "ascii_name", "utf8_name"),
    [
        (
            datetime.date(2026, 3, 20),
            "A00-1",
            "Universitetssykehuset Nord-Norge HF",
            "2026-03-20-epikrise-universitetssykehuset-nord-norge.pdf",
            "2026-03-20-epikrise-universitetssykehuset-nord-norge.pdf",
        ),
        (
            datetime.date(2025, 12, 1),
            "E00-1",
            "Helse Møre og Romsdal, Ålesund sjukehus",
            "2025-12-01-bildediagnostikk-helse-more-og-romsdal-alesund-sjukehus.pdf",
            "2025-12-01-bildediagnostikk-helse-møre-og-romsdal-ålesund-sjukehus.pdf",
        ),
        (
            datetime.date(2024, 1, 2),
            "I00-1",
            "Bærum sykehus",
            "2024-01-02-korrespondanse-baerum-sykehus.pdf",
            "2024-01-02-korrespondanse-bærum-sykehus.pdf",
        ),
        (datetime.date(2024, 1, 2), "Z99-9", "", "2024-01-02-dokument.pdf", "2024-01-02-dokument.pdf"),
    ],
)
def test_the_file_name_rule(
    day: datetime.date, category: str, institution: str, ascii_name: str, utf8_name: str
) -> None:
    assert opening.download_filename(day, category, institution) == (ascii_name, utf8_name)
    assert ascii_name.isascii()


def _rows(html: str) -> list[str]:
    return re.findall(
        r'<tr data-testid="document-row">\s*<td>[^<]*</td>\s*<td>[^<]*</td>\s*<td>[^<]*</td>\s*<td>([^<]*)</td>',
        html,
    )


def test_title_search_and_date_range(as_fastlege: Client, world: World) -> None:
    today = datetime.date.today()
    _dated(add_document(world, title="Epikrise hjerte"), today - datetime.timedelta(days=40))
    _dated(add_document(world, title="EPIKRISE lunge"), today - datetime.timedelta(days=20))
    _dated(add_document(world, title="Notat"), today - datetime.timedelta(days=5))
    handle = lookup_and_attest(as_fastlege)
    url = f"/pasient/{handle}/"
    assert sorted(_rows(as_fastlege.get(url, {"title": "epikrise"}).content.decode())) == [
        "EPIKRISE lunge",
        "Epikrise hjerte",
    ]
    start = (today - datetime.timedelta(days=30)).strftime("%d.%m.%Y")
    end = (today - datetime.timedelta(days=10)).strftime("%d.%m.%Y")
    html = as_fastlege.get(url, {"from": start, "to": end}).content.decode()
    assert _rows(html) == ["EPIKRISE lunge"]
    assert f'value="{start}"' in html and 'data-testid="filter-error"' not in html
    # As <input type="date"> would send it, too; shown back as dd.mm.yyyy.
    html = as_fastlege.get(url, {"from": (today - datetime.timedelta(days=30)).isoformat()}).content.decode()
    assert sorted(_rows(html)) == ["EPIKRISE lunge", "Notat"] and f'value="{start}"' in html
    # Sorting keeps the filter.
    assert "title=epikrise" in as_fastlege.get(url, {"title": "epikrise"}).content.decode().replace(
        "&amp;", "&"
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"from": "31.02.2026"}, "Skriv datoen som dd.mm.åååå, for eksempel 20.03.2026."),
        ({"to": "i går"}, "Skriv datoen som dd.mm.åååå, for eksempel 20.03.2026."),
        ({"from": "01.01.2026", "to": "01.01.2025"}, "Til-datoen er før fra-datoen. Datoene ble ikke brukt."),
    ],
)
def test_a_bad_date_is_said_so_and_changes_nothing(
    as_fastlege: Client, world: World, query: dict[str, str], message: str
) -> None:
    add_document(world, title="Epikrise", days_ago=400)
    add_document(world, title="Notat", days_ago=3)
    handle = lookup_and_attest(as_fastlege)
    unfiltered = _rows(as_fastlege.get(f"/pasient/{handle}/").content.decode())
    response = as_fastlege.get(f"/pasient/{handle}/", query)
    html = response.content.decode()
    assert response.status_code == 200
    assert message in html and 'aria-invalid="true"' in html
    assert _rows(html) == unfiltered and len(unfiltered) == 2


def test_institution_and_department_are_separate_sortable_columns(as_fastlege: Client, world: World) -> None:
    a = add_document(world, title="Fra kirurgi")
    b = add_document(world, title="Fra medisin")
    DocumentReference.objects.filter(pk=a.pk).update(department="Kirurgisk klinikk")
    DocumentReference.objects.filter(pk=b.pk).update(department="Medisinsk klinikk")
    handle = lookup_and_attest(as_fastlege)
    html = as_fastlege.get(f"/pasient/{handle}/", {"sort": "department"}).content.decode()
    assert re.search(r'<th scope="col" aria-sort="ascending">\s*<a [^>]*>Avdeling', html)
    assert re.search(r"<th [^>]*>\s*<a [^>]*>Institusjon", html)
    assert html.index("Fra kirurgi") < html.index("Fra medisin")
    assert f"<td>{world.hospital.name}</td>\n        <td>Kirurgisk klinikk</td>" in html
    html = as_fastlege.get(f"/pasient/{handle}/", {"sort": "-department"}).content.decode()
    assert html.index("Fra medisin") < html.index("Fra kirurgi")


def test_the_list_shows_dates_as_dd_mm_yyyy(as_fastlege: Client, world: World) -> None:
    doc = add_document(world)
    handle = lookup_and_attest(as_fastlege)
    html = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert DocumentReference.objects.get(pk=doc.pk).service_date.strftime("%d.%m.%Y") in html
    assert not ISO_DATE.search(html)


def _remote_doc(title: str, day: datetime.date, category: str = "A00-1") -> RemoteDocument:
    return RemoteDocument(
        source_id=9, source_name="Helse Bergen HF", document_id=title, category=category, type_code="A03-2",
        type_name="Epikrise", title=title, service_date=day, author="", institution_name="Helse Bergen HF",
        institution_orgnr="310400009", confidentiality_code="N", content_type="application/pdf", size=None,
        url="Binary/x", department="Hjerteavdelingen",
    )  # fmt: skip


def test_remote_rows_are_filtered_by_title_and_dates_like_local_ones() -> None:
    rows = [
        _remote_doc("Epikrise Ålesund", datetime.date(2026, 1, 10)),
        _remote_doc("epikrise bergen", datetime.date(2025, 6, 1)),
        _remote_doc("Notat", datetime.date(2026, 1, 12)),
    ]
    params = selectors.parse_list_params(
        {"title": "EPIKRISE", "from": "01.01.2026", "sort": "date"}, page_sizes=[25], default_size=25
    )
    assert [r.title for r in merged_rows([], rows, params)] == ["Epikrise Ålesund"]
    params = selectors.parse_list_params({"to": "2025-12-31"}, page_sizes=[25], default_size=25)
    assert [r.title for r in merged_rows([], rows, params)] == ["epikrise bergen"]


def test_the_viewer_shows_nothing_when_its_event_cannot_be_written(
    as_fastlege: Client, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pjd_portal.auditlog.services import AuditWriteFailed

    doc = add_document(world, title="Ikke vist uten logg")
    handle = lookup_and_attest(as_fastlege)

    def down(*args: object, **kwargs: object) -> None:
        raise AuditWriteFailed("down")

    monkeypatch.setattr(opening, "record_event_committed", down)
    response = as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/vis/")
    assert response.status_code == 503
    assert "Ikke vist uten logg" not in response.content.decode()
