"""Document rendering (documents/rendering.py): what `prepare` makes of each content type,
that hostile XML renders inert, that a large PDF is streamed and never joined, that
limits and wrong types are refused with a clear message, and that the open view still
commits its audit event before the first byte."""

from __future__ import annotations

import base64
import datetime
import hashlib
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import lxml.html
import pytest
from django.db import connection

from pjd_portal.access import policy
from pjd_portal.auditlog.models import AccessEvent
from pjd_portal.auditlog.services import AuditWriteFailed
from pjd_portal.clinic import opening
from pjd_portal.documents import demo_content, rendering
from pjd_portal.documents.rendering import (
    DocumentStreamError,
    HtmlDocument,
    PdfStream,
    UnsupportedDocument,
    prepare,
    sanitise,
)
from pjd_portal.documents.sources.local import LocalSourceClient
from tests.builders import FAKE_PDF, add_document, lookup_and_attest

CDA = "application/hl7-v3+xml"


def spec(
    category: str = "A00-1", type_name: str = "Epikrise", seed: int = 3
) -> demo_content.DemoDocumentSpec:
    return demo_content.DemoDocumentSpec(
        category=category,
        type_code="X",
        type_name=type_name,
        title=demo_content.make_title(category, type_name, seed),
        service_date=datetime.date(2024, 3, 1),
        author="Overlege Anne Berg",
        institution="Oslo universitetssykehus HF",
        department="Medisinsk klinikk",
        patient_name="Kari Nordmann",
        patient_birth_date=datetime.date(1950, 5, 17),
        seed=seed,
    )


def chunks_of(data: bytes, size: int = 4096) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def cda_with(body: bytes, media: str, representation: str = "B64", *, title: str = "CDA-tittel") -> bytes:
    text = base64.encodebytes(body) if representation == "B64" else body
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3">'
        b"<title>" + title.encode() + b"</title>"
        b'<component><nonXMLBody><text mediaType="' + media.encode() + b'" representation="'
        + representation.encode() + b'">' + text + b"</text></nonXMLBody></component></ClinicalDocument>"
    )  # fmt: skip


def streamed(result: rendering.Rendered) -> bytes:
    assert isinstance(result, PdfStream), result
    return b"".join(result.chunks)


def html_of(result: rendering.Rendered) -> str:
    assert isinstance(result, HtmlDocument), result
    return result.html


# --- Each content type ----------------------------------------------------------------------------


def test_the_allowlist_is_the_policys():
    assert rendering.ALLOWED_CONTENT_TYPES == policy.SHOWABLE_CONTENT_TYPES
    assert CDA in rendering.ALLOWED_CONTENT_TYPES


@pytest.mark.parametrize("content_type", ["application/pdf", "Application/PDF; charset=binary"])
def test_pdf_is_passed_through_as_a_stream(content_type):
    pdf = demo_content.render_pdf(spec())
    result = prepare(content_type, chunks_of(pdf), declared_size=len(pdf))
    assert isinstance(result, PdfStream) and result.content_type == "application/pdf"
    assert result.size == len(pdf)
    assert b"".join(result.chunks) == pdf


@pytest.mark.parametrize("content_type", ["application/xml", "text/xml", "text/xml; charset=utf-8"])
@pytest.mark.parametrize(
    ("category", "type_name", "expect"),
    [
        ("A00-1", "Epikrise", "Innleggelsesårsak"),
        ("I00-1", "Henvisning", "Kari Nordmann"),
        ("C00-1", "Prøvesvar medisinsk biokjemi", "<table"),
    ],
)
def test_kith_xml_renders_to_html_through_xslt(content_type, category, type_name, expect):
    s = spec(category, type_name)
    result = prepare(content_type, chunks_of(demo_content.render_xml(s)))
    html = html_of(result)
    assert isinstance(result, HtmlDocument)
    assert result.title == s.title
    assert html.startswith('<div class="portal-kith">')
    assert expect in html
    assert "Oslo universitetssykehus HF" in html and demo_content.SYNTHETIC_NOTICE in html
    assert "<Dokument" in result.source  # the source view, shown escaped by the template


@pytest.mark.parametrize("content_type", [CDA, "application/xml", "text/xml"])
def test_cda_with_kith_body_renders_like_the_kith_document(content_type):
    s = spec("C00-1", "Prøvesvar medisinsk biokjemi", seed=11)
    plain = prepare("application/xml", chunks_of(demo_content.render_xml(s)))
    wrapped = prepare(content_type, chunks_of(demo_content.render_cda(s, "kith"), 100))
    assert isinstance(wrapped, HtmlDocument) and isinstance(plain, HtmlDocument)
    assert wrapped.html == plain.html and wrapped.title == s.title


def test_cda_with_kith_body_as_text_renders():
    kith = b"<Dokument><Tittel>Henvisning</Tittel><Innhold><Avsnitt overskrift='A'>tekst</Avsnitt></Innhold></Dokument>"
    escaped = kith.replace(b"&", b"&amp;").replace(b"<", b"&lt;")
    result = prepare(CDA, iter([cda_with(escaped, "text/xml", "TXT")]))
    assert isinstance(result, HtmlDocument) and result.title == "Henvisning"
    assert "tekst" in result.html


@pytest.mark.parametrize("chunk_size", [1, 7, 4096, 1 << 20])
@pytest.mark.parametrize("content_type", [CDA, "application/xml"])
def test_cda_with_base64_pdf_streams_the_same_bytes(content_type, chunk_size):
    s = spec()
    pdf = demo_content.render_pdf(s)
    result = prepare(content_type, chunks_of(demo_content.render_cda(s, "pdf"), chunk_size))
    assert isinstance(result, PdfStream) and result.content_type == "application/pdf"
    assert result.size is None  # not known in advance
    assert b"".join(result.chunks) == pdf


def test_cda_structured_body_renders_its_narrative():
    cda = (
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>Sammenfatning</title>'
        b'<effectiveTime value="20240301"/>'
        b"<custodian><assignedCustodian><representedCustodianOrganization><name>Helse Bergen HF</name>"
        b"</representedCustodianOrganization></assignedCustodian></custodian>"
        b"<component><structuredBody><component><section><title>Funn</title><text>"
        b"<paragraph>Normale <content emphasis='bold'>funn</content>.</paragraph>"
        b"<list><item>punkt</item></list>"
        b"<table><thead><tr><th>Analyse</th></tr></thead><tbody><tr><td>Hb</td></tr></tbody></table>"
        b"</text></section></component></structuredBody></component></ClinicalDocument>"
    )
    result = prepare(CDA, iter([cda]))
    assert isinstance(result, HtmlDocument) and result.title == "Sammenfatning"
    assert '<h2 class="ds-heading" data-size="xs">Funn</h2>' in result.html
    assert "<em>funn</em>" in result.html and "<li>punkt</li>" in result.html
    assert "<td>Hb</td>" in result.html and "Helse Bergen HF" in result.html


# --- Hostile content renders inert --------------------------------------------------------------

ALLOWED_TAGS = {"div", "section", "h2", "h3", "p", "br", "dl", "dt", "dd", "ul", "ol", "li", "em", "strong"}
ALLOWED_TAGS |= {"table", "caption", "thead", "tbody", "tr", "th", "td"}


def assert_inert(html: str, *secrets: str) -> None:
    """Only allowlisted elements; no handler, style, link or resource attribute at all."""

    fragment = lxml.html.fragment_fromstring(html, create_parent="root")
    for element in fragment.iter():
        if element is fragment:
            continue
        assert element.tag in ALLOWED_TAGS, element.tag
        for name, value in element.attrib.items():
            assert name in {"class", "data-size", "data-border", "scope", "colspan", "rowspan"}, name
            assert "javascript" not in value.lower() and "url(" not in value.lower()
    lowered = html.lower()
    for needle in ("<script", "<style", "<a ", "<img", "<link", "<iframe", "<object", "<svg"):
        assert needle not in lowered, needle
    assert sanitise(html) == html  # nothing left for the sanitiser to take out
    for secret in secrets:
        assert secret not in html


HOSTILE_KITH = """<?xml version="1.0" encoding="UTF-8"?>
<Dokument xmlns:xi="http://www.w3.org/2001/XInclude" xmlns:h="http://www.w3.org/1999/xhtml"
    onload="alert(1)" style="background:url(http://evil.example/x.png)">
  <Tittel>&lt;script&gt;alert('tittel')&lt;/script&gt;</Tittel>
  <Type navn="&lt;img src=x onerror=alert(1)&gt;"/>
  <Forfatter onclick="alert(2)">Dr. &lt;b onmouseover="alert(3)"&gt;Ond&lt;/b&gt;</Forfatter>
  <Lenke>javascript:alert(4)</Lenke>
  <Stil>&lt;style&gt;body{{display:none}}&lt;/style&gt;</Stil>
  <Innhold>
    <Avsnitt overskrift="&lt;/h2&gt;&lt;script&gt;alert(5)&lt;/script&gt;">Fritekst
      <h:script>alert(6)</h:script><h:a href="javascript:alert(7)">klikk</h:a>
      <h:img src="http://evil.example/pixel.gif"/><h:link rel="stylesheet" href="http://evil.example/s.css"/>
      <xi:include href="file://{secret_path}" parse="text"/>
    </Avsnitt>
  </Innhold>
  <Analyser><Analyse navn="Hb" verdi="&lt;svg onload=alert(8)&gt;" enhet="g/dL" referanse="11-15"/></Analyser>
</Dokument>
"""


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOPPHEMMELIG-INNHOLD\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("wrapped", [False, True], ids=["kith", "cda-kith"])
def test_hostile_kith_renders_inert(secret, wrapped):
    kith = HOSTILE_KITH.format(secret_path=secret).encode("utf-8")
    data = cda_with(kith, "text/xml") if wrapped else kith
    result = prepare(CDA if wrapped else "application/xml", chunks_of(data, 64))
    assert isinstance(result, HtmlDocument), result
    assert_inert(result.html, "TOPPHEMMELIG")
    assert "TOPPHEMMELIG" not in result.source
    # The hostile text is still there, as text.
    assert "&lt;img src=x onerror=alert(1)&gt;" in result.html
    assert "&lt;script&gt;alert(5)&lt;/script&gt;" in result.html
    assert "javascript:alert(4)" in result.html  # text, not a link
    assert "Fritekst" in result.html and "klikk" in result.html
    assert result.title == "<script>alert('tittel')</script>"  # escaped by the template


def test_hostile_cda_narrative_renders_inert(secret):
    cda = f"""<?xml version="1.0"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xi="http://www.w3.org/2001/XInclude">
  <title>Notat</title>
  <component><structuredBody><component><section ID="s1" styleCode="x">
    <title onclick="alert(1)">Funn &lt;script&gt;alert(2)&lt;/script&gt;</title>
    <text>
      <paragraph styleCode="Bold" style="color:red">Se <linkHtml href="javascript:alert(3)">her</linkHtml></paragraph>
      <renderMultiMedia referencedObject="img1"/>
      <content onmouseover="alert(4)">tekst</content>
      <table border="1" onclick="alert(5)"><tbody><tr><td style="background:url(http://evil.example/)">c</td></tr></tbody></table>
      <xi:include href="file://{secret}" parse="text"/>
      <caption>&lt;style&gt;*{{}}&lt;/style&gt;</caption>
    </text>
  </section></component></structuredBody></component>
</ClinicalDocument>""".encode()
    result = prepare(CDA, iter([cda]))
    assert isinstance(result, HtmlDocument), result
    assert_inert(result.html, "TOPPHEMMELIG")
    assert "her" in result.html and "tekst" in result.html and "&lt;script&gt;" in result.html


def test_sanitise_removes_everything_active():
    html = (
        '<div class="portal-kith evil" onclick="x" style="color:red"><p>ok<script>alert(1)</script></p>'
        '<a href="javascript:alert(1)">a</a><img src="http://evil.example/x.png" onerror="alert(1)">'
        '<link rel="stylesheet" href="http://evil.example/s.css"><style>p{}</style>'
        '<iframe src="https://evil.example/"></iframe><form action="/x"><input name="y"></form>'
        '<svg onload="alert(1)"></svg><!-- kommentar --></div>'
    )
    clean = sanitise(html)
    assert_inert(clean)
    assert clean.startswith('<div class="portal-kith"><p>ok</p>')
    assert "kommentar" not in clean and "alert" not in clean


# Nine levels of ten: a billion-laughs document would expand to 10**9 characters.
LOL_DTD = (
    '<!DOCTYPE Dokument [<!ENTITY a "aaaaaaaaaa">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
    + "]>"
)


@pytest.mark.parametrize("where", ["kith", "cda-outer", "cda-inner"])
@pytest.mark.parametrize("kind", ["external-entity", "billion-laughs", "external-dtd"])
def test_documents_with_a_doctype_are_refused(secret, where, kind):
    dtd = {
        "external-entity": f'<!DOCTYPE Dokument [<!ENTITY xxe SYSTEM "file://{secret}">]>',
        "billion-laughs": LOL_DTD,
        "external-dtd": '<!DOCTYPE Dokument SYSTEM "http://evil.example/kith.dtd">',
    }[kind]
    kith = f'<?xml version="1.0"?>{dtd}<Dokument><Tittel>&xxe;</Tittel></Dokument>'.encode()
    if kind != "external-entity":
        kith = kith.replace(b"&xxe;", b"&i;" if kind == "billion-laughs" else b"x")
    if where == "kith":
        data, content_type = kith, "application/xml"
    elif where == "cda-inner":
        data, content_type = cda_with(kith, "text/xml"), CDA
    else:
        data = kith.replace(b"<Dokument>", b'<ClinicalDocument xmlns="urn:hl7-org:v3">')
        data = data.replace(b"</Dokument>", b"</ClinicalDocument>").replace(
            b"DOCTYPE Dokument", b"DOCTYPE ClinicalDocument"
        )
        content_type = CDA
    result = prepare(content_type, chunks_of(data, 50))
    assert isinstance(result, UnsupportedDocument) and result.reason == "malformed", result


# --- Streaming without joining ---------------------------------------------------------------------

MB = 1024 * 1024
BLOCK = bytes(range(256)) * 192  # 48 KiB, a multiple of 3, so blocks base64-encode independently


class CountingChunks:
    """Yields `total` bytes of a PDF in blocks made on the fly, and counts what was pulled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0
        self.chunks = 0

    def blocks(self) -> Iterator[bytes]:
        header = b"%PDF-1.7\n"
        first = header + BLOCK[len(header) :]
        produced = 0
        while produced < self.total:
            block = first if produced == 0 else BLOCK
            block = block[: self.total - produced]
            produced += len(block)
            yield block

    def __iter__(self) -> Iterator[bytes]:
        for block in self.blocks():
            self.pulled += len(block)
            self.chunks += 1
            yield block

    def expected_digest(self) -> str:
        digest = hashlib.sha256()
        for block in self.blocks():
            digest.update(block)
        return digest.hexdigest()


def consume(stream: PdfStream) -> tuple[int, int, str]:
    """Bytes, chunks and digest of a stream, holding one chunk at a time."""

    size = count = 0
    digest = hashlib.sha256()
    largest = 0
    for chunk in stream.chunks:
        size += len(chunk)
        count += 1
        largest = max(largest, len(chunk))
        digest.update(chunk)
    assert largest <= 1 * MB
    return size, count, digest.hexdigest()


def test_a_20_mb_pdf_streams_without_being_joined():
    source = CountingChunks(20 * MB)
    tracemalloc.start()
    try:
        result = prepare("application/pdf", iter(source), declared_size=20 * MB)
        assert isinstance(result, PdfStream)
        assert source.pulled < 1 * MB  # only the header was read before the answer
        size, count, digest = consume(result)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == source.pulled == 20 * MB
    assert count == source.chunks > 400
    assert digest == source.expected_digest()
    assert peak < 2 * MB, peak


def test_a_20_mb_pdf_inside_cda_is_decoded_as_it_streams():
    source = CountingChunks(20 * MB)
    head = b'<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"><component><nonXMLBody>'
    head += b'<text mediaType="application/pdf" representation="B64">'
    tail = b"</text></nonXMLBody></component></ClinicalDocument>"
    pulled = 0

    def cda() -> Iterator[bytes]:
        nonlocal pulled
        yield head
        for block in source:
            encoded = base64.encodebytes(block)  # ~66 KiB, with line breaks
            pulled += len(encoded)
            yield encoded
        yield tail

    tracemalloc.start()
    try:
        result = prepare(CDA, cda())
        assert isinstance(result, PdfStream)
        assert pulled < 1 * MB
        size, _, digest = consume(result)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == 20 * MB and pulled > 26 * MB
    assert digest == source.expected_digest()
    assert peak < 3 * MB, peak


# --- Limits and wrong types ----------------------------------------------------------------------


def test_pdf_over_the_declared_limit_is_refused_before_reading(settings):
    settings.MAX_PDF_BYTES = 1000
    source = CountingChunks(5000)
    result = prepare("application/pdf", iter(source), declared_size=5000)
    assert result == UnsupportedDocument("too_large")
    assert source.pulled == 0
    assert result.message


def test_a_callers_size_limit_applies_when_smaller():
    result = prepare("application/pdf", iter([FAKE_PDF]), 10, declared_size=len(FAKE_PDF))
    assert isinstance(result, UnsupportedDocument) and result.reason == "too_large"
    assert isinstance(prepare("application/pdf", iter([FAKE_PDF]), 10**9), PdfStream)


def test_pdf_found_over_the_limit_while_streaming_is_cut_off(settings):
    settings.MAX_PDF_BYTES = 300_000
    result = prepare("application/pdf", iter(CountingChunks(1 * MB)))  # no declared size
    assert isinstance(result, PdfStream)
    sent = 0
    with pytest.raises(DocumentStreamError) as caught:
        for chunk in result.chunks:
            sent += len(chunk)
    assert caught.value.reason == "too_large" and sent <= 300_000


def test_xml_over_the_limit_is_refused_after_reading_at_most_limit_plus_one(settings):
    settings.MAX_XML_BYTES = 1000
    data = demo_content.render_xml(spec())
    assert len(data) > 1001
    pulled = 0

    def bytewise() -> Iterator[bytes]:
        nonlocal pulled
        for i in range(len(data)):
            pulled += 1
            yield data[i : i + 1]

    result = prepare("application/xml", bytewise())
    assert result == UnsupportedDocument("too_large")
    assert pulled == 1001
    # In larger chunks, no more than limit + 1 bytes are kept either.
    assert prepare("application/xml", iter([data])) == UnsupportedDocument("too_large")
    settings.MAX_XML_BYTES = len(data)
    assert isinstance(prepare("application/xml", iter([data])), HtmlDocument)


@pytest.mark.parametrize(
    ("content_type", "data", "reason"),
    [
        ("text/html", b"<script>alert(1)</script>", "unsupported_type"),
        ("image/svg+xml", b"<svg onload='alert(1)'/>", "unsupported_type"),
        ("application/octet-stream", FAKE_PDF, "unsupported_type"),
        ("", FAKE_PDF, "unsupported_type"),
        ("application/pdf", b"<html><script>alert(1)</script></html>", "malformed"),
        ("application/pdf", b"", "malformed"),
        ("application/xml", FAKE_PDF, "malformed"),
        ("application/xml", b"<Dokument><Tittel>uavsluttet", "malformed"),
        (CDA, b"<Dokument><Tittel>ikke CDA</Tittel></Dokument>", "malformed"),
        (CDA, cda_with(b"\x89PNG....", "image/png"), "unsupported_type"),
        (CDA, cda_with(b"<html/>", "text/html"), "unsupported_type"),
        (CDA, cda_with(b"%PDF-1.4 x", "application/pdf", "TXT"), "malformed"),
        (CDA, cda_with(cda_with(b"<Dokument/>", "text/xml"), "text/xml"), "unsupported_type"),
        (CDA, cda_with(b"<html>not a pdf</html>", "application/pdf"), "malformed"),
        (CDA, b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>t</title></ClinicalDocument>', "malformed"),
    ],
)
def test_wrong_types_and_broken_documents_are_refused_with_a_reason(content_type, data, reason):
    result = prepare(content_type, chunks_of(data, 16))
    assert isinstance(result, UnsupportedDocument), result
    assert result.reason == reason
    assert result.message  # something to tell the user


def test_cda_with_broken_base64_pdf_is_refused_when_found_early():
    broken = cda_with(b"", "application/pdf").replace(b'B64">', b'B64">%%%%not base64%%%%')
    result = prepare(CDA, iter([broken]))
    assert isinstance(result, UnsupportedDocument) and result.reason == "malformed"
    assert "PDF" in result.message


def test_refusal_messages_are_in_norwegian():
    from django.utils import translation

    with translation.override("nb"):
        assert UnsupportedDocument("too_large").message == "Dokumentet er for stort til å vises i portalen."
        assert UnsupportedDocument("unsupported_type").message.startswith("Portalen kan ikke vise")
        assert UnsupportedDocument("malformed").message == "Dokumentet kunne ikke leses (ugyldig XML)."


# --- Through the view ----------------------------------------------------------------------------------


def open_url(handle, doc) -> str:
    return f"/pasient/{handle}/dokument/{doc.document_id}/"


def test_view_streams_a_cda_wrapped_pdf_with_the_pdf_headers(as_fastlege, world):
    s = spec()
    doc = add_document(world, content_type=CDA, data=demo_content.render_cda(s, "pdf"))
    handle = lookup_and_attest(as_fastlege)
    response = as_fastlege.get(open_url(handle, doc))
    assert response.status_code == 200 and response.streaming
    assert b"".join(response.streaming_content) == demo_content.render_pdf(s)
    assert response["Content-Type"] == "application/pdf"
    # Framed only by the portal's own viewer (issue 13 item 5), still sandboxed.
    assert response["Content-Security-Policy"] == "sandbox; default-src 'none'; frame-ancestors 'self'"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith("inline")
    assert response["Cache-Control"] == "no-store"


def test_view_local_pdf_has_its_length(as_fastlege, world):
    doc = add_document(world)
    handle = lookup_and_attest(as_fastlege)
    response = as_fastlege.get(open_url(handle, doc))
    assert response.streaming and response["Content-Length"] == str(len(FAKE_PDF))
    assert b"".join(response.streaming_content) == FAKE_PDF


def test_view_renders_cda_wrapped_kith_inert(as_fastlege, world, secret):
    kith = HOSTILE_KITH.format(secret_path=secret).encode("utf-8")
    doc = add_document(world, content_type=CDA, data=cda_with(kith, "text/xml"))
    handle = lookup_and_attest(as_fastlege)
    response = as_fastlege.get(open_url(handle, doc))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Fritekst" in page and "TOPPHEMMELIG" not in page
    assert "alert(" in page  # the hostile text is shown as text...
    assert "<script>alert" not in page and 'href="javascript' not in page  # ...and only as text
    assert "evil.example" not in page.split('<pre class="portal-source">')[0]
    assert [e.outcome for e in AccessEvent.objects.filter(event_type="document_open")] == ["granted"]


@pytest.mark.parametrize(
    ("content_type", "data", "setting", "message", "reason"),
    [
        (
            "application/xml",
            b"<Dokument>" + b"x" * 500 + b"</Dokument>",
            100,
            "for stort",
            "content_too_large",
        ),
        (
            "application/pdf",
            b"<html><script>alert(1)</script></html>",
            None,
            "ikke en gyldig PDF",
            "content_malformed",
        ),
        (CDA, cda_with(b"\x89PNG", "image/png"), None, "kan ikke vise", "content_unsupported_type"),
    ],
    ids=["xml-too-large", "pdf-not-a-pdf", "cda-png-body"],
)
def test_view_refuses_with_a_clear_message_and_logs_it(
    as_fastlege, world, settings, content_type, data, setting, message, reason
):
    if setting is not None:
        settings.MAX_XML_BYTES = setting
    doc = add_document(world, content_type=content_type, data=data)
    handle = lookup_and_attest(as_fastlege)
    response = as_fastlege.get(open_url(handle, doc))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="document-unreadable"' in page and message in page
    assert "<script>alert" not in page and "xxxxxxxxxx" not in page
    opens = [
        (e.outcome, e.reason_code)
        for e in AccessEvent.objects.filter(event_type="document_open").order_by("id")
    ]
    assert opens == [("granted", ""), ("invalid", reason)]


def test_view_turns_a_rendering_crash_into_the_unreadable_page(as_fastlege, world, monkeypatch):
    doc = add_document(world, content_type="application/xml", data=b"<Dokument/>")
    handle = lookup_and_attest(as_fastlege)

    def crash(*args, **kwargs):
        raise RuntimeError("xslt broke")

    monkeypatch.setattr(rendering, "prepare", crash)
    response = as_fastlege.get(open_url(handle, doc))
    assert response.status_code == 200
    assert 'data-testid="document-unreadable"' in response.content.decode()


def open_remotely(world, settings, monkeypatch) -> None:
    """Make the local store's source a remote one, answered by the local store's client:
    a remote open with real bytes and no server, through the remote store's own path."""

    settings.MHD_SOURCES = {
        world.source.organisation.orgnr: {"base_url": "http://127.0.0.1:9/", "token": False}
    }
    monkeypatch.setattr(opening, "client_for", LocalSourceClient)


def url_for(store: str, handle, doc) -> str:
    if store == "local":
        return open_url(handle, doc)
    return f"/pasient/{handle}/kilde/{doc.source_id}/dokument/{doc.document_id}/"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store", ["local", "remote"])
@pytest.mark.parametrize("wrapped", [False, True], ids=["pdf", "cda-pdf"])
def test_view_commits_the_event_before_the_first_chunk(
    as_fastlege, world, monkeypatch, settings, wrapped, store
):
    s = spec()
    pdf = demo_content.render_pdf(s)
    data = demo_content.render_cda(s, "pdf") if wrapped else pdf
    doc = add_document(world, content_type=CDA if wrapped else "application/pdf", data=data)
    handle = lookup_and_attest(as_fastlege)
    if store == "remote":
        open_remotely(world, settings, monkeypatch)
    order: list[str] = []
    original_record = opening.record_event_committed  # type: ignore[attr-defined]  # the name opening calls, patched below
    original_read = opening.read_bytes

    def recording_record(event, **kwargs):
        row = original_record(event, **kwargs)
        order.append(f"committed {event.kind.name}")
        return row

    def recording_read(what):
        order.append("content read")
        content_type, size, chunks = original_read(what)

        def first_chunk_after_commit():
            for chunk in chunks:
                if "first chunk" not in order:
                    # Committed, not merely written: no transaction is open, and the row is there.
                    assert not connection.in_atomic_block
                    assert AccessEvent.objects.filter(event_type="document_open", outcome="granted").exists()
                    order.append("first chunk")
                yield chunk

        return content_type, size, first_chunk_after_commit()

    monkeypatch.setattr(opening, "record_event_committed", recording_record)
    monkeypatch.setattr(opening, "read_bytes", recording_read)
    response = as_fastlege.get(url_for(store, handle, doc))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == pdf
    assert order == ["committed document_open", "content read", "first chunk"]
    [granted] = AccessEvent.objects.filter(event_type="document_open", outcome="granted")
    if store == "local":
        assert granted.document_id == doc.pk
    else:
        assert granted.source_orgnr == world.source.organisation.orgnr
        assert granted.details["remote_document_id"] == str(doc.document_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store", ["local", "remote"])
def test_no_byte_is_read_when_the_event_cannot_be_committed(as_fastlege, world, monkeypatch, settings, store):
    doc = add_document(world)
    handle = lookup_and_attest(as_fastlege)
    if store == "remote":
        open_remotely(world, settings, monkeypatch)

    def failing(event, **kwargs):
        raise AuditWriteFailed("test: the log is down")

    def never(what):
        raise AssertionError("bytes read without a committed event")

    monkeypatch.setattr(opening, "record_event_committed", failing)
    monkeypatch.setattr(opening, "read_bytes", never)
    response = as_fastlege.get(url_for(store, handle, doc))
    assert response.status_code == 503
    assert FAKE_PDF not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("store", ["local", "remote"])
def test_content_that_cannot_be_had_is_a_second_event_and_the_source_page(
    as_fastlege, world, monkeypatch, settings, store
):
    doc = add_document(world)
    handle = lookup_and_attest(as_fastlege)
    if store == "remote":
        open_remotely(world, settings, monkeypatch)
    doc.content.delete()
    response = as_fastlege.get(url_for(store, handle, doc))
    assert response.status_code == 503
    opens = [
        (e.outcome, e.reason_code)
        for e in AccessEvent.objects.filter(event_type="document_open").order_by("id")
    ]
    reason = "content_unavailable" if store == "local" else "source_not_found"
    assert opens == [("granted", ""), ("not_found", reason)]


@pytest.mark.django_db
@pytest.mark.parametrize("store", ["local", "remote"])
def test_a_refusal_is_logged_and_looks_like_a_missing_document(
    as_fastlege, world, monkeypatch, settings, store
):
    doc = add_document(world, days_ago=365 * 3, category="C00-1")  # a prøvesvar outside its window
    handle = lookup_and_attest(as_fastlege)
    if store == "remote":
        open_remotely(world, settings, monkeypatch)
    response = as_fastlege.get(url_for(store, handle, doc))
    assert response.status_code == 404
    [denied] = AccessEvent.objects.filter(event_type="access_denied")
    assert (denied.outcome, denied.reason_code) == ("denied", "outside_window")
    assert not AccessEvent.objects.filter(event_type="document_open").exists()


def test_one_byte_chunker_for_the_whole_project():
    """Bytes in memory are sliced by `rendering.chunked` only; a remote answer is read by
    `mhd._body_chunks` only; both in `rendering.CHUNK_SIZE` pieces, defined once."""

    root = Path(__file__).resolve().parent.parent / "pjd_portal"
    found: dict[str, list[str]] = {"CHUNK_SIZE =": [], "iter_content(": [], "def chunked(": []}
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for needle, where in found.items():
            where.extend([path.relative_to(root).as_posix()] * text.count(needle))
    assert found == {
        "CHUNK_SIZE =": ["documents/rendering.py"],
        "iter_content(": ["documents/sources/mhd.py"],
        "def chunked(": ["documents/rendering.py"],
    }
    assert [len(c) for c in rendering.chunked(b"x" * (rendering.CHUNK_SIZE + 1))] == [rendering.CHUNK_SIZE, 1]
