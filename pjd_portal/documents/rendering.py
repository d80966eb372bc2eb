"""Turning stored document bytes into something safe to show in a browser.

PDFs are passed through as they are, inline. XML is parsed with a parser that resolves no
entities and fetches nothing, and shown through an auto-escaping template: whatever text
the document holds renders inert.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

PDF_TYPES = frozenset({"application/pdf"})
XML_TYPES = frozenset({"application/xml", "text/xml"})
ALLOWED_CONTENT_TYPES = PDF_TYPES | XML_TYPES


class UnsupportedDocument(Exception):
    pass


@dataclass
class XmlSection:
    heading: str
    text: str


@dataclass
class XmlView:
    title: str = ""
    fields: list[tuple[str, str]] = field(default_factory=list)
    sections: list[XmlSection] = field(default_factory=list)
    table: list[dict[str, str]] = field(default_factory=list)
    pretty_source: str = ""


def _safe_parser() -> etree.XMLParser:
    # Comments and processing instructions carry nothing a clinician should read.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        dtd_validation=False,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def xml_view(data: bytes) -> XmlView:
    """A structured, text-only view of a KITH-like XML document (escaped on render)."""

    try:
        root = etree.fromstring(data, parser=_safe_parser())
    except etree.XMLSyntaxError as exc:
        raise UnsupportedDocument("malformed_xml") from exc
    view = XmlView(pretty_source=etree.tostring(root, pretty_print=True, encoding="unicode"))
    for child in root:
        name = _local(child.tag)
        if name == "Tittel":
            view.title = (child.text or "").strip()
        elif name == "Type":
            view.fields.append(("Type", child.get("navn") or (child.text or "").strip()))
        elif name == "Pasient":
            for sub in child:
                view.fields.append((_local(sub.tag), (sub.text or "").strip()))
        elif name == "Innhold":
            for sub in child:
                view.sections.append(
                    XmlSection(heading=sub.get("overskrift", ""), text="".join(sub.itertext()).strip())
                )
        elif name == "Analyser":
            for sub in child:
                view.table.append({k: v for k, v in sub.attrib.items()})
        elif len(child) == 0:
            view.fields.append((name, (child.text or "").strip()))
    return view
