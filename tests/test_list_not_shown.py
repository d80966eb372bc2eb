"""Issue 13 item 4, "say what is not shown": under the list, counts by reason class (never
content), per source where the count comes from a source's answer; the sources that show
this clinician no list, by name and without a count; the counts in the list event."""

from __future__ import annotations

import datetime
import re
from dataclasses import replace

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pjd_portal.access import policy
from pjd_portal.accounts.models import HprAuthorization, Organisation, OrganisationKind, Role
from pjd_portal.clinic import remote
from pjd_portal.clinic.remote import SourceAnswer
from pjd_portal.documents.facts import DocumentFacts
from pjd_portal.documents.models import ConfidentialityCode, DocumentReference, DocumentSource
from pjd_portal.documents.sources.base import RemoteDocument, SearchResult
from tests.builders import (
    World,
    add_document,
    events,
    grant_role,
    login,
    lookup_and_attest,
    make_user,
    synthetic_id,
)

pytestmark = pytest.mark.django_db

UNN = "Universitetssykehuset Nord-Norge HF"


def _unn(world: World) -> DocumentSource:
    """Helse Nord's rule: the list only to those who may open; doctors open."""

    org = Organisation.objects.create(orgnr="310500003", name=UNN, kind=OrganisationKind.HELSEFORETAK)
    return DocumentSource.objects.create(
        organisation=org, name=UNN, open_authorizations=["LE"], list_only_if_may_open=True
    )


def _add_from(world: World, source: DocumentSource, **kwargs: object) -> DocumentReference:
    doc = add_document(world, **kwargs)  # type: ignore[arg-type]
    doc.source = source
    doc.save(update_fields=["source"])
    return doc


def _nurse_client(world: World) -> Client:
    home = Organisation.objects.create(
        orgnr="310700007", name="Solbakken sykehjem", kind=OrganisationKind.SYKEHJEM, is_consumer=True
    )
    nurse = make_user("t-sykepleier", synthetic_id(14, 7, 80, 611), "910000044", "Siri Sykepleier")
    HprAuthorization.objects.create(hpr_number="910000044", code="SP")
    grant_role(nurse, home, Role.CLINICIAN)
    return login(Client(), nurse, home)


def _lines(html: str) -> list[str]:
    section = re.search(r'<section class="portal-not-shown".*?</section>', html, re.S)
    if section is None:
        return []
    return [" ".join(t.split()) for t in re.findall(r"<p [^>]*>(.*?)</p>", section.group(0), re.S)]


def _demo_like(world: World) -> DocumentSource:
    for i in range(5):  # five henvisninger older than their one-year window
        add_document(world, title=f"Gammel henvisning {i}", category="I00-1", days_ago=400 + i)
    add_document(world, title="Ny henvisning", category="I00-1", days_ago=30)
    add_document(world, title="Sperret 1", confidentiality=ConfidentialityCode.NORS)
    add_document(world, title="Sperret 2", confidentiality=ConfidentialityCode.NORS, days_ago=3)
    add_document(world, title="Epikrise")
    unn = _unn(world)
    for i in range(4):
        _add_from(world, unn, title=f"UNN-notat {i}", days_ago=5 + i)
    _add_from(world, unn, title="UNN gammel henvisning", category="I00-1", days_ago=500)
    return unn


def test_the_demo_like_case_for_the_fastlege_and_for_a_nurse(as_fastlege: Client, world: World) -> None:
    unn = _demo_like(world)
    handle = lookup_and_attest(as_fastlege)
    html = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert html.count('data-testid="document-row"') == 6  # 1 + 1 + 4 from UNN
    assert _lines(html) == [
        "6 henvisninger eldre enn 1 år vises ikke (kjernejournalforskriften).",
        "2 dokumenter er sperret og vises ikke.",
    ]
    assert 'data-testid="source-not-listing"' not in html
    [event] = events("document_list")
    assert event.details["not_shown"] == {"outside_window": {"I00-1": 6}, "blocked": 2}
    assert event.details["sources_not_listing"] == {}

    nurse = _nurse_client(world)
    nurse_handle = lookup_and_attest(nurse, basis="SAMTYKKE")
    html = nurse.get(f"/pasient/{nurse_handle}/").content.decode()
    assert html.count('data-testid="document-row"') == 2 and "UNN-notat" not in html
    # UNN's own old henvisning is not counted for her: counting would tell what UNN holds.
    assert _lines(html) == [
        "5 henvisninger eldre enn 1 år vises ikke (kjernejournalforskriften).",
        "2 dokumenter er sperret og vises ikke.",
        f"{UNN} viser dokumentlisten bare til helsepersonell som kan åpne dokumentene.",
    ]
    assert re.search(
        rf'data-testid="source-not-listing" data-source="{unn.pk}" data-reason="list_only_if_may_open"', html
    )
    event = events("document_list")[-1]
    assert event.details["not_shown"] == {"outside_window": {"I00-1": 5}, "blocked": 2}
    assert event.details["sources_not_listing"] == {str(unn.pk): "list_only_if_may_open"}


def test_a_source_says_so_even_when_it_holds_nothing_for_the_patient(
    as_fastlege: Client, world: World
) -> None:
    """The notice depends on the clinician and the source's rules, never on the patient."""

    _unn(world)
    add_document(world)
    nurse = _nurse_client(world)
    html = nurse.get(f"/pasient/{lookup_and_attest(nurse, basis='SAMTYKKE')}/").content.decode()
    assert f"{UNN} viser dokumentlisten bare til helsepersonell som kan åpne dokumentene." in _lines(html)


@pytest.mark.parametrize(
    ("rules", "reason", "line"),
    [
        (
            {"list_authorizations": ["SP"]},
            "list_authorization",
            f"{UNN} viser ikke dokumentlisten til helsepersonell med din autorisasjon.",
        ),
        (
            {"list_organisation_kinds": ["helseforetak"]},
            "list_organisation_kind",
            f"{UNN} viser ikke dokumentlisten til din type virksomhet (Fastlegekontor).",
        ),
    ],
)
def test_a_source_that_does_not_list_to_this_clinician_is_named_without_a_count(
    as_fastlege: Client, world: World, rules: dict[str, list[str]], reason: str, line: str
) -> None:
    org = Organisation.objects.create(orgnr="310500003", name=UNN, kind=OrganisationKind.HELSEFORETAK)
    source = DocumentSource.objects.create(organisation=org, name=UNN, **rules)
    _add_from(world, source, title="Skjult", confidentiality=ConfidentialityCode.NORS)
    _add_from(world, source, title="Skjult gammel", category="C00-1", days_ago=900)
    handle = lookup_and_attest(as_fastlege)
    html = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert _lines(html) == [line]  # nothing counted of what the source holds
    assert events("document_list")[-1].details["sources_not_listing"] == {str(source.pk): reason}


def test_categories_outside_the_regulation_and_formats_that_cannot_be_shown(
    as_fastlege: Client, world: World
) -> None:
    add_document(world, title="Utenfor forskriften", category="Z99-9")
    add_document(world, title="HTML-notat", content_type="text/html")
    add_document(world, title="HTML-notat 2", content_type="text/html", category="C00-1")
    add_document(world, title="Gammel CT", category="E00-1", days_ago=6 * 365)
    add_document(world, title="Gammelt prøvesvar", category="C00-1", days_ago=400)
    handle = lookup_and_attest(as_fastlege)
    html = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    # The visible list is empty: the lines are there all the same.
    assert 'data-testid="no-documents"' in html
    assert _lines(html) == [
        "1 prøvesvar eldre enn 1 år vises ikke (kjernejournalforskriften).",
        "1 dokument fra bildediagnostikk eldre enn 5 år vises ikke (kjernejournalforskriften).",
        "1 dokument i en kategori utenfor kjernejournalforskriften vises ikke.",
        "2 dokumenter i formater portalen ikke kan vise, vises ikke.",
    ]
    for title in ("Utenfor forskriften", "HTML-notat", "Gammel CT", "Gammelt prøvesvar"):
        assert title not in html
    assert events("document_list")[-1].details["not_shown"] == {
        "outside_window": {"C00-1": 1, "E00-1": 1},
        "category_not_covered": 1,
        "format": 2,
    }


def test_english_lines_when_the_user_chooses_english(as_fastlege: Client, world: World) -> None:
    for i in range(5):
        add_document(world, category="I00-1", days_ago=400 + i)
    add_document(world, confidentiality=ConfidentialityCode.NORS)
    handle = lookup_and_attest(as_fastlege)
    as_fastlege.post("/i18n/setlang/", {"language": "en", "next": "/"})
    html = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert _lines(html) == [
        "5 referrals older than 1 year are not shown (kjernejournalforskriften).",
        "1 document is blocked (sperret) and not shown.",
    ]


def test_the_counts_do_not_follow_the_clinicians_own_filter(as_fastlege: Client, world: World) -> None:
    """A title search must not count what it may not show (it would tell a hidden title)."""

    add_document(world, title="Hemmelig diagnose", confidentiality=ConfidentialityCode.NORS)
    add_document(world, title="Epikrise")
    handle = lookup_and_attest(as_fastlege)
    for query in ({"title": "Hemmelig"}, {"title": "zzz"}, {"category": "C00-1"}):
        html = as_fastlege.get(f"/pasient/{handle}/", query).content.decode()
        assert _lines(html) == ["1 dokument er sperret og vises ikke."], query


def _list_queries(client: Client, handle: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(f"/pasient/{handle}/")
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_the_list_query_count_does_not_grow_with_the_hidden_documents(
    as_fastlege: Client, world: World
) -> None:
    add_document(world)
    add_document(world, category="I00-1", days_ago=400)
    handle = lookup_and_attest(as_fastlege)
    few = _list_queries(as_fastlege, handle)
    for i in range(10):
        add_document(world, category="I00-1", days_ago=400 + i)
        add_document(world, category="C00-1", days_ago=500 + i)
        add_document(world, confidentiality=ConfidentialityCode.NORS, days_ago=i)
        add_document(world, category="Z99-9", days_ago=i)
        add_document(world, content_type="text/html", days_ago=i)
    many = _list_queries(as_fastlege, handle)
    assert few == many
    [*_, last] = events("document_list")
    assert last.details["not_shown"]["blocked"] == 10


def test_the_aggregate_classes_agree_with_the_per_document_reason(world: World) -> None:
    """`policy.not_shown_q` (the local store) and `policy.not_shown_reason` (the remote
    answers) put every document in the same class; together with the list they cover all."""

    today = timezone.localdate()
    docs = []
    for category in ("A00-1", "C00-1", "D00-1", "E00-1", "I00-1", "Z99-9"):
        for days in (0, 364, 366, 5 * 365 - 1, 5 * 365 + 2, 30 * 365):
            for code in ("N", "NORS"):
                for content_type in ("application/pdf", "text/html"):
                    docs.append(
                        add_document(
                            world,
                            category=category,
                            days_ago=days,
                            confidentiality=code,
                            content_type=content_type,
                        )
                    )
    in_class: dict[int, str] = {}
    for key, q in policy.not_shown_q(today).items():
        for pk in DocumentReference.objects.filter(q, patient=world.patient).values_list("pk", flat=True):
            assert pk not in in_class, (pk, key, in_class.get(pk))
            in_class[pk] = key.partition(":")[0]
    listed = set(
        DocumentReference.objects.filter(
            policy.listable_documents_q(today, frozenset({world.source.pk})), patient=world.patient
        ).values_list("pk", flat=True)
    )
    for doc in docs:
        facts = DocumentFacts(
            category=doc.category,
            service_date=doc.service_date,
            confidentiality_code=doc.confidentiality_code,
            patient_id=doc.patient_id,
            source_id=doc.source_id,
            content_type=doc.content_type,
        )
        reason = policy.not_shown_reason(facts, today)
        assert in_class.get(doc.pk, "") == reason, (doc.category, doc.service_date, doc.confidentiality_code)
        assert (doc.pk in listed) is (reason == "")
        assert (reason == "") is policy.document_listable(facts, today)
        assert (reason == policy.NOT_SHOWN_BLOCKED) is policy.document_counted_as_blocked(facts, today)


def _remote(label: str, days_ago: int, **overrides: object) -> RemoteDocument:
    values: dict[str, object] = {
        "source_id": 7,
        "source_name": "Helse Bergen HF",
        "document_id": label,
        "category": "A00-1",
        "type_code": "A03-2",
        "type_name": "Epikrise",
        "title": label,
        "service_date": timezone.localdate() - datetime.timedelta(days=days_ago),
        "author": "Overlege Anne Berg",
        "institution_name": "Helse Bergen HF",
        "institution_orgnr": "310400009",
        "confidentiality_code": "N",
        "content_type": "application/pdf",
        "size": 10,
        "url": "Binary/x",
    }
    values.update(overrides)
    return RemoteDocument(**values)  # type: ignore[arg-type]


def test_a_remote_answer_is_counted_by_reason_class_from_the_answer_itself() -> None:
    documents = [
        _remote("vises", 1),
        _remote("uten-type", 2, content_type=""),  # listed: opened as what arrives, if showable
        _remote("gammelt-svar", 400, category="C00-1"),
        _remote("sperret", 3, confidentiality_code="NORS"),
        _remote("utenfor", 3, category="Z99-9"),
        _remote("html", 3, content_type="text/html"),
    ]
    answer = SourceAnswer(7, "Helse Bergen HF", SearchResult(documents, total=6, received=6))
    listing = remote.listing_of(answer, timezone.localdate(), patient_id=1)
    assert [d.document_id for d in listing.documents] == ["vises", "uten-type"]
    assert listing.blocked == 1
    assert listing.not_shown == {
        "outside_window:C00-1": 1,
        "blocked": 1,
        "category_not_covered": 1,
        "format": 1,
    }
    assert listing.event_details()["not_shown"] == {
        "outside_window": {"C00-1": 1},
        "blocked": 1,
        "category_not_covered": 1,
        "format": 1,
    }


def test_remote_lines_name_their_source() -> None:
    from django.utils import translation

    from pjd_portal.clinic.listing import not_shown_lines

    counts = {"outside_window:C00-1": 2, "format": 1}
    with translation.override("nb"):
        lines = not_shown_lines(counts, source_id=7, source_name="Helse Bergen HF")
    assert [line.message for line in lines] == [
        "Fra Helse Bergen HF: 2 prøvesvar eldre enn 1 år vises ikke (kjernejournalforskriften).",
        "Fra Helse Bergen HF: 1 dokument i et format portalen ikke kan vise, vises ikke.",
    ]
    assert {line.source_id for line in lines} == {7}
    with translation.override("en"):
        lines = not_shown_lines(counts, source_id=7, source_name="Helse Bergen HF")
    assert lines[0].message == (
        "From Helse Bergen HF: 2 test results older than 1 year are not shown (kjernejournalforskriften)."
    )


def test_source_list_refusal_reasons() -> None:
    clinician = policy.ClinicianFacts(1, "910000044", frozenset({"SP"}), 1, OrganisationKind.SYKEHJEM, True)
    rules = policy.SourceRules(
        source_id=3,
        list_authorizations=frozenset({"LE", "SP"}),
        list_organisation_kinds=frozenset({"sykehjem", "fastlegekontor"}),
        open_authorizations=frozenset({"LE"}),
        open_organisation_kinds=frozenset({"fastlegekontor"}),
        list_only_if_may_open=True,
    )
    assert policy.source_list_refusal(clinician, rules) == policy.SOURCE_LISTS_ONLY_TO_OPENERS
    assert policy.source_list_refusal(clinician, replace(rules, list_only_if_may_open=False)) == ""
    assert (
        policy.source_list_refusal(clinician, replace(rules, list_authorizations=frozenset({"LE"})))
        == policy.SOURCE_LIST_AUTHORIZATION
    )
    assert (
        policy.source_list_refusal(clinician, replace(rules, list_organisation_kinds=frozenset({"legevakt"})))
        == policy.SOURCE_LIST_ORGANISATION_KIND
    )
    assert policy.sources_not_listing(
        clinician, [rules, replace(rules, source_id=4, list_only_if_may_open=False)]
    ) == {3: policy.SOURCE_LISTS_ONLY_TO_OPENERS}
