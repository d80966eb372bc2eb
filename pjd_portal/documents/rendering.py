"""Turning a document's bytes, local or from a remote source, into something safe to show.

`prepare(content_type, chunks, size_limit)` is the one entry point; the local store's view
and the remote (MHD) source both call it, after the audit event is committed. It answers
one of three things:

- `PdfStream`: the PDF to send inline, as an iterator of byte chunks that is never
  joined. A plain PDF is passed through; a CDA document whose `nonXMLBody` holds a base64
  PDF is decoded while it is read. The first bytes are checked (`%PDF-`) before anything
  is returned, so a document that is not a PDF never reaches the browser.
- `HtmlDocument`: KITH XML (plain, or wrapped in CDA) or a CDA `structuredBody`, turned
  into an HTML fragment by XSLT (xslt/) and then put through an allowlist sanitiser, so no
  script, event handler, style, link or remote resource survives whatever the document
  held.
- `UnsupportedDocument`: refused, with a reason (too large, wrong type, malformed) and a
  message for the user.

Size limits are `settings.MAX_PDF_BYTES` and `settings.MAX_XML_BYTES` (environment
`PJD_MAX_PDF_BYTES`, `PJD_MAX_XML_BYTES`); a caller may pass a smaller `size_limit`. XML
is read up to its limit and one byte more, never further. A PDF is refused up front when
its declared size is too large; one that turns out larger while streaming is cut off
(`DocumentStreamError`), since a status can no longer be sent by then.

A document with a DOCTYPE is refused; every parser here resolves no entities, loads no
DTD, fetches nothing and processes no XInclude; the stylesheets run with all XSLT file and network access denied.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nh3
from django.conf import settings
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from lxml import etree

logger = logging.getLogger(__name__)

PDF_TYPE = "application/pdf"
CDA_TYPE = "application/hl7-v3+xml"
PDF_TYPES = frozenset({PDF_TYPE})
XML_TYPES = frozenset({"application/xml", "text/xml", CDA_TYPE})
ALLOWED_CONTENT_TYPES = PDF_TYPES | XML_TYPES
# Media types a CDA nonXMLBody may carry that the portal shows.
_CDA_XML_BODY_TYPES = frozenset({"application/xml", "text/xml"})

CDA_NS = "urn:hl7-org:v3"
CDA_ROOT = f"{{{CDA_NS}}}ClinicalDocument"
_CDA_TEXT_PATH = [CDA_ROOT, f"{{{CDA_NS}}}component", f"{{{CDA_NS}}}nonXMLBody", f"{{{CDA_NS}}}text"]

CHUNK_SIZE = 64 * 1024
# Where a PDF's header must be found (as PDF readers accept it).
_PDF_HEADER_WINDOW = 1024
_XSLT_DIR = Path(__file__).resolve().parent / "xslt"

Reason = Literal["too_large", "unsupported_type", "malformed"]

_MESSAGES = {
    "too_large": _("The document is too large to be shown in the portal."),
    "unsupported_type": _("The portal cannot show documents of this type."),
    "malformed": _("The document could not be read (malformed XML)."),
    "malformed_pdf": _("The document could not be read (not a valid PDF)."),
}


@dataclass(frozen=True)
class PdfStream:
    """A PDF to send as it is read. `chunks` must be consumed at most once."""

    chunks: Iterator[bytes]
    size: int | None = None  # the exact length when known in advance (Content-Length)
    content_type: str = PDF_TYPE


@dataclass(frozen=True)
class HtmlDocument:
    """A sanitised HTML fragment (safe to insert as is) and, for the page, its title."""

    html: str
    title: str = ""
    source: str = ""  # the XML that was rendered, pretty-printed; shown escaped only


@dataclass(frozen=True)
class UnsupportedDocument:
    """Refused: `reason` for the program and the log, `message` for the user."""

    reason: Reason
    detail: str = field(default="", compare=False)  # for the log; never shown

    @property
    def message(self) -> str:
        key = "malformed_pdf" if self.reason == "malformed" and self.detail.startswith("pdf") else self.reason
        return str(_MESSAGES[key])


Rendered = PdfStream | HtmlDocument | UnsupportedDocument


class DocumentStreamError(Exception):
    """A PDF stream broke off after it was returned: too large, or its encoding broken."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail


def media_type(content_type: str) -> str:
    """`Application/PDF; charset=x` -> `application/pdf`."""

    return content_type.split(";", 1)[0].strip().lower()


def size_limit_for(content_type: str) -> int:
    """The configured limit for a content type (the PDF one for anything not XML)."""

    return int(settings.MAX_XML_BYTES if media_type(content_type) in XML_TYPES else settings.MAX_PDF_BYTES)


def chunked(data: bytes | memoryview, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Slices of bytes already in memory (the local store, a Binary decoded from JSON), as
    `prepare` takes them: the project's one chunker (a remote source's stream arrives in
    `CHUNK_SIZE` pieces too, `sources/mhd.py: _body_chunks`)."""

    view = memoryview(data)
    for start in range(0, len(view), size):
        yield view[start : start + size].tobytes()


def prepare(
    content_type: str,
    chunks: Iterable[bytes],
    size_limit: int | None = None,
    *,
    declared_size: int | None = None,
) -> Rendered:
    """What to show for a document of `content_type` whose bytes `chunks` yields.

    `size_limit` caps the size on top of the configured limit for the type (the smaller
    applies); `declared_size` is the size the source states, when it states one.
    """

    media = media_type(content_type)
    source = iter(chunks)
    if media not in ALLOWED_CONTENT_TYPES:
        _close(source)
        return UnsupportedDocument("unsupported_type", media)
    limit = _limit(size_limit_for(media), size_limit)
    if declared_size is not None and declared_size > limit:
        _close(source)
        return UnsupportedDocument("too_large", f"declared {declared_size} > {limit}")
    if media in PDF_TYPES:
        return _pdf_stream(source, limit, size=declared_size)
    return _xml(media, source, limit, size_limit)


def _limit(configured: int, caller: int | None) -> int:
    return configured if caller is None else min(configured, caller)


def _close(iterator: object) -> None:
    close = getattr(iterator, "close", None)
    if callable(close):
        close()


# --- PDF --------------------------------------------------------------------------------------


def _pdf_stream(source: Iterator[bytes], limit: int, *, size: int | None = None) -> Rendered:
    """Read just enough to check the header, then stream the rest with a running count."""

    head: list[bytes] = []
    seen = 0
    try:
        while seen < _PDF_HEADER_WINDOW:
            chunk = next(source, None)
            if chunk is None:
                break
            if chunk:
                head.append(chunk)
                seen += len(chunk)
            if seen > limit:
                _close(source)
                return UnsupportedDocument("too_large", f"pdf over {limit}")
    except DocumentStreamError as exc:
        _close(source)
        return UnsupportedDocument(exc.reason, f"pdf: {exc.detail}")
    start = b"".join(head)[:_PDF_HEADER_WINDOW]
    if b"%PDF-" not in start:
        _close(source)
        return UnsupportedDocument("malformed", "pdf: no %PDF- header")
    return PdfStream(chunks=_counted(head, source, limit), size=size)


def _counted(head: list[bytes], rest: Iterator[bytes], limit: int) -> Iterator[bytes]:
    sent = 0
    try:
        for chunk in itertools.chain(head, rest):
            sent += len(chunk)
            if sent > limit:
                raise DocumentStreamError("too_large", f"pdf over {limit} while streaming")
            yield chunk
    finally:
        head.clear()
        _close(rest)


class _Base64Decoder:
    """Base64 text in arbitrary pieces to bytes, four characters at a time."""

    _WHITESPACE = b" \t\r\n"

    def __init__(self) -> None:
        self._rest = b""
        self.out: list[bytes] = []

    def feed(self, text: str) -> None:
        try:
            data = self._rest + text.encode("ascii").translate(None, self._WHITESPACE)
        except UnicodeEncodeError as exc:
            raise DocumentStreamError("malformed", "pdf: base64 text is not ASCII") from exc
        cut = len(data) - len(data) % 4
        self._rest = data[cut:]
        if cut:
            try:
                self.out.append(base64.b64decode(data[:cut], validate=True))
            except binascii.Error as exc:
                raise DocumentStreamError("malformed", "pdf: bad base64") from exc

    def finish(self) -> None:
        if self._rest:
            raise DocumentStreamError("malformed", "pdf: base64 length not a multiple of 4")

    def take(self) -> list[bytes]:
        out, self.out = self.out, []
        return out


# --- XML and CDA --------------------------------------------------------------------------------


def _parser_options() -> dict[str, Any]:
    return {
        "resolve_entities": False,
        "no_network": True,
        "dtd_validation": False,
        "load_dtd": False,
        "huge_tree": False,
    }


def _safe_parser() -> etree.XMLParser:
    # Comments and processing instructions carry nothing a clinician should read.
    return etree.XMLParser(**_parser_options(), remove_comments=True, remove_pis=True)


def _parse(data: bytes) -> etree._Element:
    """A tree of `data`; a document with a DOCTYPE is refused like malformed XML."""

    root = etree.fromstring(data, parser=_safe_parser())
    if root.getroottree().docinfo.doctype:
        raise etree.XMLSyntaxError("a DOCTYPE is not accepted", 0, 1, 1)
    return root


class _Scanner:
    """lxml parser target: finds the root and a CDA `component/nonXMLBody/text`.

    Text of a base64 PDF body goes to a decoder as libxml2 hands it over, in pieces, so
    it is never held whole; the text of any other body is kept (the caller bounds it).
    """

    def __init__(self) -> None:
        self.path: list[str] = []
        self.root = ""
        self.body_media_type = ""
        self.body_representation = ""
        self.in_body = False
        self.body_seen = False
        self.body_done = False
        self.decoder: _Base64Decoder | None = None
        self.body_text: list[str] = []
        self.has_doctype = False

    def doctype(self, name: object, public_id: object, system_url: object) -> None:
        # Real KITH and CDA documents have none; a DTD only brings entities (XXE, billion laughs).
        self.has_doctype = True

    def start(self, tag: object, attrib: dict[str, str], *_: object) -> None:
        name = tag if isinstance(tag, str) else ""
        self.path.append(name)
        if len(self.path) == 1:
            self.root = name
        if self.path == _CDA_TEXT_PATH and not self.body_seen:
            self.in_body = self.body_seen = True
            self.body_media_type = media_type(attrib.get("mediaType", "text/plain"))
            self.body_representation = attrib.get("representation", "TXT").upper()
            if self.body_media_type in PDF_TYPES and self.body_representation == "B64":
                self.decoder = _Base64Decoder()

    def end(self, tag: object) -> None:
        if self.in_body and len(self.path) == len(_CDA_TEXT_PATH):
            self.in_body = False
            self.body_done = True
        self.path.pop()

    def data(self, text: str) -> None:
        if not self.in_body or len(self.path) != len(_CDA_TEXT_PATH):
            return
        if self.decoder is not None:
            self.decoder.feed(text)
        else:
            self.body_text.append(text)

    def close(self) -> None:
        return None


def _xml(media: str, source: Iterator[bytes], limit: int, caller_limit: int | None) -> Rendered:
    scanner = _Scanner()
    parser = etree.XMLParser(target=scanner, **_parser_options())
    raw = bytearray()
    streaming = False
    try:
        for chunk in source:
            if not chunk:
                continue
            take = chunk[: limit + 1 - len(raw)]
            raw.extend(take)
            parser.feed(take)
            if scanner.has_doctype:
                return UnsupportedDocument("malformed", "xml: a DOCTYPE is not accepted")
            if scanner.decoder is not None:
                # A CDA document carrying a PDF: from here on, decode as it is read.
                pdf_limit = _limit(int(settings.MAX_PDF_BYTES), caller_limit)
                raw.clear()
                streaming = True  # the stream owns `source` now
                return _pdf_stream(_cda_pdf_chunks(parser, scanner, source, limit), pdf_limit)
            if len(raw) > limit:
                return UnsupportedDocument("too_large", f"xml over {limit}")
        parser.close()
    except etree.XMLSyntaxError as exc:
        return UnsupportedDocument("malformed", f"xml: {exc}")
    except DocumentStreamError as exc:  # pragma: no cover - the decoder starts only in PDF mode
        return UnsupportedDocument(exc.reason, exc.detail)
    finally:
        if not streaming:
            _close(source)

    data = bytes(raw)
    del raw
    if scanner.root == CDA_ROOT:
        return _cda(data, scanner, limit)
    if media == CDA_TYPE:
        return UnsupportedDocument("malformed", f"xml: {CDA_TYPE} without a ClinicalDocument root")
    return _render_kith(data)


def _cda_pdf_chunks(
    parser: etree.XMLParser, scanner: _Scanner, source: Iterator[bytes], tail_limit: int
) -> Iterator[bytes]:
    """The decoded PDF of a CDA body, fed on from `source` as it is consumed."""

    decoder = scanner.decoder
    assert decoder is not None
    tail = 0
    try:
        yield from decoder.take()
        for chunk in source:
            if scanner.body_done:
                # The rest is the document's closing tags: bounded, and checked to be XML.
                tail += len(chunk)
                if tail > tail_limit:
                    logger.warning("CDA document continues far beyond its PDF body; not read further")
                    return
            try:
                parser.feed(chunk)
            except etree.XMLSyntaxError as exc:
                if not scanner.body_done:
                    raise DocumentStreamError("malformed", f"pdf: CDA document malformed: {exc}") from exc
                logger.warning("CDA document malformed after its PDF body: %s", exc)
                return
            yield from decoder.take()
        if not scanner.body_done:
            raise DocumentStreamError("malformed", "pdf: CDA document ends inside its body")
        decoder.finish()
        yield from decoder.take()
    finally:
        _close(source)


def _cda(data: bytes, scanner: _Scanner, limit: int) -> Rendered:
    if scanner.body_seen:
        body_type = scanner.body_media_type
        if body_type in PDF_TYPES:
            return UnsupportedDocument(
                "malformed", f"cda: PDF body in representation {scanner.body_representation}"
            )
        if body_type not in _CDA_XML_BODY_TYPES:
            return UnsupportedDocument("unsupported_type", f"cda body {body_type}")
        text = "".join(scanner.body_text)
        if scanner.body_representation == "B64":
            try:
                inner = base64.b64decode("".join(text.split()), validate=True)
            except (binascii.Error, ValueError):
                return UnsupportedDocument("malformed", "cda: bad base64 in body")
        else:
            inner = text.strip().encode("utf-8")
        if len(inner) > limit:
            return UnsupportedDocument("too_large", f"cda body over {limit}")
        try:
            inner_root = _parse(inner)
        except etree.XMLSyntaxError as exc:
            return UnsupportedDocument("malformed", f"cda body: {exc}")
        if inner_root.tag == CDA_ROOT:
            return UnsupportedDocument("unsupported_type", "cda inside cda")
        rendered = _render_kith_tree(inner_root)
        if not rendered.title:
            outer = _parse(data)
            rendered = HtmlDocument(html=rendered.html, title=_cda_title(outer), source=rendered.source)
        return rendered
    root = _parse(data)
    if root.find(f"{{{CDA_NS}}}component/{{{CDA_NS}}}structuredBody") is None:
        return UnsupportedDocument("malformed", "cda: no body")
    html = _transform("cda.xsl", root, _cda_labels())
    return HtmlDocument(html=sanitise(html), title=_cda_title(root), source=_pretty(root))


def _cda_title(root: etree._Element) -> str:
    return str(root.xpath("normalize-space(/cda:ClinicalDocument/cda:title)", namespaces={"cda": CDA_NS}))


def _render_kith(data: bytes) -> Rendered:
    try:
        root = _parse(data)
    except etree.XMLSyntaxError as exc:
        return UnsupportedDocument("malformed", f"xml: {exc}")
    return _render_kith_tree(root)


def _render_kith_tree(root: etree._Element) -> HtmlDocument:
    html = _transform("kith.xsl", root, _kith_labels())
    title = str(root.xpath("normalize-space(/*/*[local-name()='Tittel'])"))
    return HtmlDocument(html=sanitise(html), title=title, source=_pretty(root))


def _pretty(root: etree._Element) -> str:
    return str(etree.tostring(root, pretty_print=True, encoding="unicode"))


def _kith_labels() -> dict[str, str]:
    return {
        "label_type": gettext("Type"),
        "label_date": gettext("Date"),
        "label_author": gettext("Author"),
        "label_institution": gettext("Institution"),
        "label_department": gettext("Department"),
        "label_patient": gettext("Patient"),
        "label_birth_date": gettext("Date of birth"),
        "label_analysis": gettext("Analysis"),
        "label_value": gettext("Value"),
        "label_unit": gettext("Unit"),
        "label_reference": gettext("Reference"),
    }


def _cda_labels() -> dict[str, str]:
    return {
        "label_date": gettext("Date"),
        "label_author": gettext("Author"),
        "label_institution": gettext("Institution"),
        "label_patient": gettext("Patient"),
    }


_stylesheets = threading.local()


def _stylesheet(name: str) -> etree.XSLT:
    """One compiled stylesheet per thread (an XSLT object is not shared across threads)."""

    cache: dict[str, etree.XSLT] = getattr(_stylesheets, "cache", None) or {}
    _stylesheets.cache = cache
    if name not in cache:
        document = etree.parse(str(_XSLT_DIR / name), parser=_safe_parser())
        cache[name] = etree.XSLT(document, access_control=etree.XSLTAccessControl.DENY_ALL)
    return cache[name]


def _transform(name: str, root: etree._Element, labels: dict[str, str]) -> str:
    params = {key: etree.XSLT.strparam(value) for key, value in labels.items()}
    return str(_stylesheet(name)(root.getroottree(), **params))


# --- Sanitising ---------------------------------------------------------------------------------

_TAGS = frozenset(
    {
        "div", "section", "h2", "h3", "p", "br", "dl", "dt", "dd", "ul", "ol", "li", "em", "strong",
        "table", "caption", "thead", "tbody", "tr", "th", "td",
    }
)  # fmt: skip
_ATTRIBUTES = {
    "h2": {"data-size"},
    "h3": {"data-size"},
    "table": {"data-border"},
    "th": {"scope", "colspan", "rowspan"},
    "td": {"colspan", "rowspan"},
}
_CLASSES = {
    "div": {"portal-kith", "portal-cda"},
    "dl": {"portal-fields"},
    "h2": {"ds-heading"},
    "h3": {"ds-heading"},
    "p": {"ds-paragraph", "portal-note"},
    "table": {"ds-table"},
}


def sanitise(html: str) -> str:
    """Only the elements, attributes and classes the stylesheets make; no URL of any scheme."""

    return nh3.clean(
        html,
        tags=set(_TAGS),
        attributes={tag: set(names) for tag, names in _ATTRIBUTES.items()},
        allowed_classes={tag: set(names) for tag, names in _CLASSES.items()},
        clean_content_tags={"script", "style"},
        url_schemes=set(),
        link_rel=None,
        strip_comments=True,
    )
