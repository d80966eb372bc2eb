"""Each source's own rules, seen through the clinician path: who sees its list, who may
open its documents, and Helse Nord's "list only to those who may open"."""

from __future__ import annotations

import uuid

import pytest

from pjd_portal.accounts.models import Organisation, OrganisationKind
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.documents.models import ConfidentialityCode, DocumentSource
from tests.builders import World, add_document, comparable, lookup_and_attest

pytestmark = pytest.mark.django_db


def other_source(world: World, **rules: object) -> DocumentSource:
    org = Organisation.objects.create(
        orgnr="310500003", name="Universitetssykehuset Nord-Norge HF", kind=OrganisationKind.HELSEFORETAK
    )
    return DocumentSource.objects.create(organisation=org, name=org.name, **rules)


def add_from(world: World, source: DocumentSource, **kwargs: object):
    doc = add_document(world, **kwargs)  # type: ignore[arg-type]
    doc.source = source
    doc.save(update_fields=["source"])
    return doc


def last_denial() -> str:
    return AccessEvent.objects.filter(event_type="access_denied").latest("id").reason_code


def test_source_that_lists_but_does_not_let_this_clinician_open(as_fastlege, world):
    source = other_source(world, open_authorizations=["SP"])
    doc = add_from(world, source, title="Sees, cannot open")
    handle = lookup_and_attest(as_fastlege)
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert "Sees, cannot open" in page
    assert str(doc.document_id) not in page  # no link
    assert 'data-testid="not-openable"' in page
    refused = as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/")
    missing = as_fastlege.get(f"/pasient/{handle}/dokument/{uuid.uuid4()}/")
    assert refused.status_code == missing.status_code == 404
    assert comparable(refused) == comparable(missing)
    assert AccessEvent.objects.filter(
        event_type="access_denied", document=doc, reason_code="source_rule_open"
    ).exists()


def test_helse_nord_lists_only_to_those_who_may_open(as_fastlege, world):
    source = other_source(world, open_authorizations=["SP"], list_only_if_may_open=True)
    add_from(world, source, title="Not even listed")
    add_document(world, title="From the default source")
    handle = lookup_and_attest(as_fastlege)
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert "Not even listed" not in page and "From the default source" in page


@pytest.mark.parametrize(
    "rules",
    [
        {"list_authorizations": ["SP"]},
        {"list_organisation_kinds": ["helseforetak"]},
    ],
)
def test_source_that_does_not_list_to_this_clinician(as_fastlege, world, rules):
    source = other_source(world, **rules)
    doc = add_from(world, source, title="Hidden by the source")
    handle = lookup_and_attest(as_fastlege)
    assert "Hidden by the source" not in as_fastlege.get(f"/pasient/{handle}/").content.decode()
    # Opening is never broader than the list, whatever the open rules say.
    assert as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/").status_code == 404
    assert last_denial() == "source_rule_open"


def test_blocked_documents_are_counted_only_from_sources_that_list(as_fastlege, world):
    quiet = other_source(world, list_authorizations=["SP"])
    add_from(world, quiet, title="x", confidentiality=ConfidentialityCode.NORS)
    add_document(world, title="y", confidentiality=ConfidentialityCode.NORS)
    add_document(world, title="Ordinary")
    handle = lookup_and_attest(as_fastlege)
    page = as_fastlege.get(f"/pasient/{handle}/").content.decode()
    assert 'data-testid="hidden-count"' in page
    assert 'data-count="1"' in page


def test_a_rule_changed_between_two_requests_applies_to_the_second(as_fastlege, world):
    doc = add_document(world, title="Rule changes")
    handle = lookup_and_attest(as_fastlege)
    assert as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/").status_code == 200
    DocumentSource.objects.filter(pk=world.source.pk).update(open_authorizations=["SP"])
    assert as_fastlege.get(f"/pasient/{handle}/dokument/{doc.document_id}/").status_code == 404
    assert last_denial() == "source_rule_open"
