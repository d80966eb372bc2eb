"""The benchmark's PDFs: a handful of distinct demo documents (demo_content) at sizes across
50–500 KB, and the two opened by size (2 KB, 200 KB). A document that must be larger than
what demo_content draws is grown by an incremental update holding one unreferenced stream
of random bytes, so it stays a valid PDF (readers skip an object nothing refers to) and
does not shrink when compressed."""

from __future__ import annotations

import datetime
import random
import re

from fpdf import FPDF

from pjd_portal.documents import demo_content
from pjd_portal.documents.models import DocumentCategory

KB = 1024
# The sizes of the distinct documents the scale data set reuses. None is 200 KB: that size
# is the one document opened by size, and the list must not hold a second.
SIZES_KB = (50, 80, 120, 170, 240, 330, 420, 500)
OPEN_SMALL = 2 * KB
OPEN_LARGE = 200 * KB


def _trailer_value(pdf: bytes, pattern: bytes) -> bytes:
    found = re.findall(pattern, pdf)
    if not found:
        raise ValueError("not a PDF with a classic trailer")
    value: bytes = found[-1]
    return value


def _update(pdf: bytes, filler: int, rng: random.Random) -> bytes:
    size = int(_trailer_value(pdf, rb"/Size (\d+)"))
    root = _trailer_value(pdf, rb"/Root (\d+ \d+ R)")
    previous = int(_trailer_value(pdf, rb"startxref\s+(\d+)"))
    body = pdf if pdf.endswith(b"\n") else pdf + b"\n"
    data = rng.randbytes(filler)
    obj = b"%d 0 obj\n<< /Length %d >>\nstream\n" % (size, filler) + data + b"\nendstream\nendobj\n"
    xref_at = len(body) + len(obj)
    xref = b"xref\n0 1\n0000000000 65535 f \n%d 1\n%010d 00000 n \n" % (size, len(body))
    trailer = b"trailer\n<< /Size %d /Root %s /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (
        size + 1,
        root,
        previous,
        xref_at,
    )
    return body + obj + xref + trailer


def grown_to(pdf: bytes, target: int, seed: int) -> bytes:
    """`pdf` grown to exactly `target` bytes (or as it is, when it is that large already)."""

    if len(pdf) >= target:
        return pdf
    filler = max(0, target - len(pdf) - 200)
    for _ in range(10):  # the offsets' digits settle within a step or two
        grown = _update(pdf, filler, random.Random(seed))
        if len(grown) == target:
            return grown
        filler += target - len(grown)
        if filler < 0:
            break
    raise ValueError(f"cannot grow a {len(pdf)}-byte PDF to {target} bytes")


def small_pdf(title: str) -> bytes:
    """A one-page text-only prøvesvar, well under 2 KB before it is grown."""

    pdf = FPDF()
    pdf.set_creator("pjd_portal bench")
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text=title)
    pdf.ln(8)
    pdf.cell(text=demo_content.SYNTHETIC_NOTICE.replace("–", "-"))
    return bytes(pdf.output())


def demo_pdf(index: int, patient_name: str, birth: datetime.date) -> tuple[str, str, str, bytes]:
    """The `index`-th distinct demo document: (category, type code, type name, bytes)."""

    types = demo_content.document_types()
    categories = list(DocumentCategory.values)
    category = categories[index % len(categories)]
    type_code, type_name = types[category][index % len(types[category])]
    kind = demo_content.document_kind(category, type_name)
    author = demo_content.authors_for(kind)[0]
    spec = demo_content.DemoDocumentSpec(
        category=category,
        type_code=type_code,
        type_name=type_name,
        title=demo_content.make_title(category, type_name, 9000 + index),
        service_date=datetime.date(2026, 1, 1) - datetime.timedelta(days=17 * index),
        author=author.display,
        institution="Oslo universitetssykehus HF",
        department="Medisinsk klinikk",
        patient_name=patient_name,
        patient_birth_date=birth,
        seed=9000 + index,
    )
    data = grown_to(demo_content.render_pdf(spec), SIZES_KB[index] * KB, seed=index)
    return category, type_code, type_name, data
