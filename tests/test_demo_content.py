"""Synthetic demo documents: real PDFs and well-formed, escaped XML, byte-for-byte deterministic.

Pure Python: no database, no Django settings needed.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import zlib

import pytest
from lxml import etree

from pjd_portal.documents import demo_content

NS = {"k": demo_content.XML_NAMESPACE}
SEEDS = (0, 1, 2, 3, 5, 7, 13, 14, 1001)
ALL_TYPES = [
    (category, type_code, type_name)
    for category, types in demo_content.document_types().items()
    for type_code, type_name in types
]


def make_spec(category: str = "A00-1", type_code: str = "A03-2", type_name: str = "Epikrise", seed: int = 1):
    return demo_content.DemoDocumentSpec(
        category=category,
        type_code=type_code,
        type_name=type_name,
        title=demo_content.make_title(category, type_name, seed),
        service_date=datetime.date(2024, 3, 5),
        author="Overlege Anne Berg",
        institution="Oslo universitetssykehus HF",
        department="Medisinsk klinikk",
        patient_name="Åse Ørnulf Ærbø",
        patient_birth_date=datetime.date(1971, 4, 3),
        seed=seed,
    )


def parse(data: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(data, parser=parser)


def pdf_text(data: bytes) -> bytes:
    """The decompressed content streams of a PDF (core-font text is Windows-1252); image
    streams (DCTDecode JPEG) are left out."""

    chunks = []
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            chunks.append(zlib.decompress(match.group(1)))
        except zlib.error:
            continue
    return b"\n".join(chunks)


def test_every_category_has_at_least_two_types():
    types = demo_content.document_types()
    assert set(types) == {"A00-1", "C00-1", "D00-1", "E00-1", "I00-1"}
    for category, entries in types.items():
        assert len(entries) >= 2, category
        codes = [code for code, _ in entries]
        assert len(codes) == len(set(codes))
        assert all(code[0] == category[0] for code in codes)
    assert ("A03-2", "Epikrise") in types["A00-1"]


def test_document_types_returns_a_copy():
    demo_content.document_types()["A00-1"].append(("X", "Y"))
    assert ("X", "Y") not in demo_content.document_types()["A00-1"]


@pytest.mark.parametrize(("category", "type_code", "type_name"), ALL_TYPES)
def test_pdf_for_every_type_and_several_seeds(category, type_code, type_name):
    for seed in SEEDS:
        data = demo_content.render_pdf(make_spec(category, type_code, type_name, seed))
        assert data.startswith(b"%PDF-")
        assert data.rstrip().endswith(b"%%EOF")
        # As big as real clinical PDFs are (letterhead, key images), never a small stub.
        assert 50 * 1024 <= len(data) <= 400 * 1024, (type_name, seed, len(data))


@pytest.mark.parametrize(("category", "type_code", "type_name"), ALL_TYPES)
def test_xml_for_every_type_and_several_seeds(category, type_code, type_name):
    for seed in SEEDS:
        spec = make_spec(category, type_code, type_name, seed)
        data = demo_content.render_xml(spec)
        assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
        root = parse(data)
        assert etree.QName(root).localname == "Dokument"
        assert root.find("k:Type", NS).get("kode") == type_code
        assert root.find("k:Tittel", NS).text == spec.title
        assert root.find("k:Pasient/k:Navn", NS).text == spec.patient_name
        assert root.find("k:Pasient/k:Fodselsdato", NS).text == "1971-04-03"
        sections = root.findall("k:Innhold/k:Avsnitt", NS)
        assert 2 <= len(sections) <= 6
        assert all(section.get("overskrift") and section.text for section in sections)
        analyses = root.findall("k:Analyser/k:Analyse", NS)
        if category == "C00-1":
            assert analyses
            assert all(set(a.attrib) == {"navn", "verdi", "enhet", "referanse"} for a in analyses)
        else:
            assert not analyses


def test_pdf_is_deterministic():
    spec = make_spec(seed=3)
    assert demo_content.render_pdf(spec) == demo_content.render_pdf(spec)
    # Creation date comes from the service date, not the clock.
    assert b"/CreationDate (D:20240305120000Z" in demo_content.render_pdf(spec)


def test_pdf_differs_between_seeds_and_dates():
    spec = make_spec(seed=3)
    assert demo_content.render_pdf(spec) != demo_content.render_pdf(dataclasses.replace(spec, seed=4))
    later = dataclasses.replace(spec, service_date=datetime.date(2024, 3, 6))
    assert demo_content.render_pdf(spec) != demo_content.render_pdf(later)


def test_pdf_shows_header_patient_and_norwegian_letters():
    spec = make_spec("C00-1", "C01-1", "Prøvesvar medisinsk biokjemi", seed=2)
    text = pdf_text(demo_content.render_pdf(spec)).decode("cp1252")
    for expected in (
        spec.institution,
        spec.department,
        spec.type_name,
        spec.patient_name,
        "03.04.1971",
        "05.03.2024",
        spec.author,
        "Syntetiske testdata – ikke en ekte pasient",
        "Referanse",
    ):
        assert f"({expected})" in text or expected in text, expected


def test_pdf_survives_characters_outside_the_core_font():
    spec = dataclasses.replace(make_spec(), patient_name="Zoë Łukasz 王 ≥ − x")
    assert demo_content.render_pdf(spec).startswith(b"%PDF-")


def test_xml_is_deterministic():
    spec = make_spec("C00-1", "C02-1", "Prøvesvar mikrobiologi", seed=7)
    assert demo_content.render_xml(spec) == demo_content.render_xml(spec)


def test_xml_escapes_the_hostile_text_for_seeds_divisible_by_seven():
    for seed in (0, 7, 14, 700):
        data = demo_content.render_xml(make_spec(seed=seed))
        assert b"<script" not in data
        assert b"&lt;script&gt;alert('x')&lt;/script&gt;" in data
        texts = [s.text or "" for s in parse(data).findall("k:Innhold/k:Avsnitt", NS)]
        assert any(demo_content.HOSTILE_TEXT in text for text in texts)
        # Parsed back, it is text only: no element called script.
        assert not parse(data).xpath("//*[local-name()='script']")


def test_xml_without_hostile_text_for_other_seeds():
    for seed in (1, 2, 6, 8):
        assert b"script" not in demo_content.render_xml(make_spec(seed=seed))


def test_xml_escapes_markup_in_spec_fields():
    spec = dataclasses.replace(make_spec(), patient_name='Ola "<b>" & Kari', department="<i>Avd</i>")
    data = demo_content.render_xml(spec)
    root = parse(data)
    assert root.find("k:Pasient/k:Navn", NS).text == 'Ola "<b>" & Kari'
    assert root.find("k:Avdeling", NS).text == "<i>Avd</i>"
    assert b"<b>" not in data and b"<i>" not in data


def test_xml_contains_synthetic_notice_and_utf8():
    data = demo_content.render_xml(make_spec())
    assert "Syntetiske testdata – ikke en ekte pasient".encode() in data
    assert "Åse Ørnulf Ærbø".encode() in data


def test_make_title_is_deterministic_and_matches_the_type():
    assert demo_content.make_title("A00-1", "Epikrise", 5) == demo_content.make_title("A00-1", "Epikrise", 5)
    titles = {demo_content.make_title("A00-1", "Epikrise", seed) for seed in range(40)}
    assert len(titles) >= 3
    assert all(title.startswith("Epikrise etter innleggelse for ") for title in titles)
    assert demo_content.make_title("I00-1", "Henvisning", 1).startswith("Henvisning til ")
    assert demo_content.make_title("I00-1", "Svar på henvisning", 1).startswith("Svar på henvisning")
    assert demo_content.make_title("C00-1", "Prøvesvar patologi", 1).startswith("Prøvesvar: histologi")


def test_unknown_type_name_falls_back_to_the_category():
    spec = make_spec("E00-1", "E99-9", "Ukjent type", seed=2)
    assert demo_content.render_pdf(spec).startswith(b"%PDF-")
    assert parse(demo_content.render_xml(spec)).find("k:Innhold/k:Avsnitt", NS) is not None
