"""ITI-67's search parameters, read strictly, and the next page's cursor.

An unknown parameter, a modifier or a prefix the API does not take is a 400 with an
OperationOutcome (as HAPI FHIR answers with strict handling), never silently dropped: a
dropped filter would return more than the EPJ asked for. The patient is the attest's: a
GET query names no patient (the national id never goes in a URL), and the cursor of a
next link carries the search without it, signed and bound to the client and the patient
(by a keyed hash, not the id).
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from django.core import signing
from django.utils.crypto import salted_hmac

from pjd_portal.auditlog.events import Detail
from pjd_portal.clinic.selectors import ListParams
from pjd_portal.epj_api.fhir import CATEGORY_SYSTEM, NATIONAL_ID_SYSTEMS
from pjd_portal.patients.lookup import read_national_id
from pjd_portal.patients.national_id import NationalId

MAX_COUNT = 100
DEFAULT_COUNT = 50
# `_id` looks the one document up in the whole list (so the list's rules decide on it).
ID_SCAN_SIZE = 100_000
CURSOR_SECONDS = 30 * 60
INCLUDE_SUBJECT = "DocumentReference:subject"
STATUS_SYSTEM = "http://hl7.org/fhir/document-reference-status"
STATUSES = frozenset({"current", "superseded", "entered-in-error"})
PATIENT_PARAMETERS = frozenset(
    {"patient", "patient.identifier", "subject", "subject.identifier", "patient:identifier"}
)
SINGLE = frozenset(
    {"status", "_count", "_sort", "_id", "_include", "_cursor", "patient.identifier", "_format"}
)
KNOWN = frozenset({"category", "date"}) | SINGLE
JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
_CODE = re.compile(r"[A-Za-z0-9\-.]{1,20}")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?)?)?")
_CURSOR_SALT = "pjd.epj-api.cursor"


class BadRequest(Exception):
    def __init__(self, diagnostics: str, code: str = "invalid", *, status: int = 400) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Search:
    """One search as asked (and as a cursor carries it on)."""

    current: bool = True  # `status` includes current (the only status the list has)
    categories: tuple[str, ...] = ()
    no_category: bool = False  # categories ANDed to nothing: no document matches
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    sort: str = "-date"
    count: int = DEFAULT_COUNT
    document_id: str = ""
    include_patient: bool = False
    page: int = 1
    patient_identifier: str = ""  # POST only; never in a cursor
    binding: str = ""  # a cursor's: the client and patient it was made for (keyed hash)

    @property
    def empty(self) -> bool:
        """Nothing can match (another status, categories that exclude each other, dates
        that cross): the answer is an empty Bundle without asking any source."""

        crossed = self.date_from is not None and self.date_to is not None and self.date_from > self.date_to
        return not self.current or self.no_category or crossed

    def list_params(self) -> ListParams:
        """The portal list's parameters for this search: the same filter, sort and paging."""

        by_id = bool(self.document_id)
        return ListParams(
            sort=self.sort,
            category="",
            page=1 if by_id else self.page,
            page_size=ID_SCAN_SIZE if by_id else self.count,
            date_from=self.date_from,
            date_to=self.date_to,
            categories=self.categories,
        )

    def log_filters(self) -> dict[str, Detail]:
        """What the list event records of the search (never the patient's id)."""

        return {
            "from": self.date_from,
            "to": self.date_to,
            "categories": list(self.categories),
            "id": self.document_id,
            "status_current": self.current,
        }


def _pairs(data: Iterable[tuple[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in data:
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, str | int) or isinstance(v, bool):
                raise BadRequest(f"The parameter {name} must be a string.", "structure")
            found.setdefault(str(name), []).append(str(v).strip())
    return found


def read(data: Iterable[tuple[str, Any]], *, in_url: bool) -> Search:
    """The search from a form body, a JSON body or (`in_url`) a GET query."""

    params = _pairs(data)
    named = set(params)
    patient_named = {n for n in named if n.split(":")[0] in PATIENT_PARAMETERS or n.startswith("patient")}
    if in_url and patient_named:
        raise BadRequest(
            "A GET search takes no patient parameter: the national id never goes in a URL. "
            "The patient is the attest's; search with POST _search to name it.",
            "not-supported",
        )
    unknown = named - KNOWN
    if unknown:
        raise BadRequest(
            f"Unknown or unsupported search parameters: {', '.join(sorted(unknown))}.", "not-supported"
        )
    repeated = sorted(n for n in named & SINGLE if len(params[n]) > 1)
    if repeated:
        raise BadRequest(f"Parameters given more than once: {', '.join(repeated)}.", "not-supported")
    one = {n: v[0] for n, v in params.items() if n in SINGLE}
    if one.get("_format", "json") not in JSON_FORMATS:
        raise BadRequest("Only FHIR JSON is answered (_format json).", "not-supported")
    if "_cursor" in one:
        rest = named - {"_cursor", "_format", "patient.identifier"}
        if rest:
            raise BadRequest(
                "A cursor carries its search: give no other parameters with it.", "not-supported"
            )
        search = read_cursor(one["_cursor"])
        return replace(search, patient_identifier=_patient(one.get("patient.identifier", "")))
    search = Search(
        current=_current(one.get("status", "current")),
        sort=_sort(one.get("_sort", "-date")),
        count=_count(one.get("_count")),
        document_id=_document_id(one.get("_id", "")),
        include_patient=_include(one.get("_include", "")),
        patient_identifier=_patient(one.get("patient.identifier", "")),
    )
    search = _with_categories(search, params.get("category", []))
    return _with_dates(search, params.get("date", []))


def _current(value: str) -> bool:
    codes = set()
    for part in value.split(","):
        system, bar, code = part.strip().rpartition("|")
        if bar and system not in ("", STATUS_SYSTEM):
            raise BadRequest("status takes codes of the document-reference-status system.", "value")
        if code not in STATUSES:
            raise BadRequest("status must be current, superseded or entered-in-error.", "value")
        codes.add(code)
    return "current" in codes


def _sort(value: str) -> str:
    if value not in ("date", "-date"):
        raise BadRequest("_sort takes date or -date.", "not-supported")
    return value


def _count(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_COUNT
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_COUNT:
        raise BadRequest(f"_count must be a number from 1 to {MAX_COUNT}.", "value")
    return int(value)


def _document_id(value: str) -> str:
    if value and not _FHIR_ID.fullmatch(value):
        raise BadRequest("_id is not a FHIR id.", "value")
    return value


def _include(value: str) -> bool:
    if value and value != INCLUDE_SUBJECT:
        raise BadRequest(f"_include takes {INCLUDE_SUBJECT} only.", "not-supported")
    return bool(value)


def canonical_id(raw: str) -> str:
    """A national id as the register keeps it (`131169 00216` is `13116900216`), so that
    two accepted spellings compare and bind alike; as given when it does not parse (it
    then matches no patient)."""

    parsed = read_national_id(raw)
    return parsed.value if isinstance(parsed, NationalId) else raw


def _patient(value: str) -> str:
    if not value:
        return ""
    system, bar, national_id = value.rpartition("|")
    if bar and system not in ("", *NATIONAL_ID_SYSTEMS):
        raise BadRequest("patient.identifier takes the fødselsnummer, D-nummer or H-nummer system.", "value")
    if not national_id:
        raise BadRequest("patient.identifier has no value.", "value")
    return canonical_id(national_id)


def _with_categories(search: Search, values: list[str]) -> Search:
    chosen: set[str] | None = None
    for value in values:  # comma = OR within one, repeated = AND
        codes = set()
        for part in value.split(","):
            system, bar, code = part.strip().rpartition("|")
            if bar and system not in ("", CATEGORY_SYSTEM):
                raise BadRequest(f"category takes Volven 9602 codes ({CATEGORY_SYSTEM}).", "value")
            if not _CODE.fullmatch(code):
                raise BadRequest("category has a code that is not one.", "value")
            codes.add(code)
        chosen = codes if chosen is None else chosen & codes
    if chosen is None:
        return search
    return replace(search, categories=tuple(sorted(chosen)), no_category=not chosen)


def _date_range(text: str) -> tuple[datetime.date, datetime.date]:
    match = _DATE.fullmatch(text)
    if not match:
        raise BadRequest("date must be a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime).", "value")
    year, month, day = match.group(1), match.group(2), match.group(3)
    try:
        if day:
            start = end = datetime.date(int(year), int(month), int(day))
        elif month:
            start = datetime.date(int(year), int(month), 1)
            end = start.replace(day=calendar.monthrange(start.year, start.month)[1])
        else:
            start, end = datetime.date(int(year), 1, 1), datetime.date(int(year), 12, 31)
    except ValueError as exc:
        raise BadRequest("date is not a calendar date.", "value") from exc
    if not 1900 <= start.year <= 2100:
        raise BadRequest("date is out of range.", "value")
    return start, end


def _with_dates(search: Search, values: list[str]) -> Search:
    lower, upper = search.date_from, search.date_to
    one_day = datetime.timedelta(days=1)
    for value in values:
        prefix = value[:2] if value[:2].isalpha() else "eq"
        text = value[2:] if value[:2].isalpha() else value
        if prefix not in ("eq", "ge", "le", "gt", "lt"):
            raise BadRequest("date takes the prefixes eq, ge, le, gt and lt.", "not-supported")
        start, end = _date_range(text)
        bounds = {
            "eq": (start, end),
            "ge": (start, None),
            "gt": (end + one_day, None),
            "le": (None, end),
            "lt": (None, start - one_day),
        }[prefix]
        if bounds[0] is not None:
            lower = bounds[0] if lower is None else max(lower, bounds[0])
        if bounds[1] is not None:
            upper = bounds[1] if upper is None else min(upper, bounds[1])
    return replace(search, date_from=lower, date_to=upper)


# --- the cursor -----------------------------------------------------------------------


def _bound_to(client_id: str, national_id: str) -> str:
    return salted_hmac(_CURSOR_SALT, f"{client_id}|{national_id}").hexdigest()[:32]


def cursor(search: Search, *, page: int, client_id: str, national_id: str) -> str:
    """The next page's search, signed; no national id in it (a keyed hash binds it to the
    client and the attest's patient, so it opens nothing for another)."""

    payload = {
        "p": page,
        "c": search.count,
        "k": list(search.categories),
        "n": search.no_category,
        "f": search.date_from.isoformat() if search.date_from else None,
        "t": search.date_to.isoformat() if search.date_to else None,
        "s": search.sort,
        "i": search.include_patient,
        "cur": search.current,
        "b": _bound_to(client_id, national_id),
    }
    return signing.dumps(payload, salt=_CURSOR_SALT, compress=True)


def read_cursor(token: str) -> Search:
    try:
        payload = signing.loads(token, salt=_CURSOR_SALT, max_age=CURSOR_SECONDS)
        return (
            Search(
                current=bool(payload["cur"]),
                categories=tuple(str(c) for c in payload["k"]),
                no_category=bool(payload["n"]),
                date_from=datetime.date.fromisoformat(payload["f"]) if payload["f"] else None,
                date_to=datetime.date.fromisoformat(payload["t"]) if payload["t"] else None,
                sort=_sort(str(payload["s"])),
                count=_count(str(payload["c"])),
                include_patient=bool(payload["i"]),
                page=max(1, int(payload["p"])),
                patient_identifier="",
                binding=str(payload["b"]),
            )
            if isinstance(payload, dict)
            else _bad_cursor()
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
        raise BadRequest("The cursor is not valid (or has expired): search again.", "value") from exc


def _bad_cursor() -> Search:
    raise ValueError("cursor")


def fits(search: Search, *, client_id: str, national_id: str) -> bool:
    """A search from a cursor made for this client and this patient (or none at all)."""

    return not search.binding or search.binding == _bound_to(client_id, national_id)
