"""Who and what the scale data set holds, named in one place for the data set's command,
the sessions' command and the runner."""

from __future__ import annotations

import datetime

from pjd_portal.patients.lookup import read_national_id
from pjd_portal.patients.national_id import InvalidNationalId, has_valid_check_digits

# The bench clinicians' shared HPR number (synthetic, like the demo's 9100000xx): every
# scale patient is on this list, so UNNTAK applies to each of them for every bench clinician.
BENCH_HPR = "910009990"
FASTLEGE_ORGNR = "310000000"  # Storgata legekontor, seed_demo's fastlegekontor
DOCUMENTS_PER_PATIENT = 20
HEAVY_DOCUMENTS = 1000
BENCH_BIRTH = datetime.date(1975, 5, 5)
HEAVY_BIRTH = datetime.date(1960, 6, 6)
SCALE_FIRST_BIRTH = datetime.date(1930, 1, 2)
BENCH_FAMILY = "Benkmarksen"  # every bench person's family name: findable, plainly synthetic
TITLE_SMALL = "Prøvesvar, benchmark 2 kB"
TITLE_LARGE = "Epikrise, benchmark 200 kB"


def synthetic_id(birth: datetime.date, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A Tenor-style synthetic number (month + 80) for `birth` with valid check digits, that
    the portal's own parser accepts (PJD_ALLOW_SYNTHETIC_IDS) and no one else has."""

    first = 300 if birth.year < 2000 else 700  # the individual number's range by century
    base = f"{birth.day:02d}{birth.month + 80:02d}{birth.year % 100:02d}"
    for individual in range(first, first + 200):
        for check in range(100):
            candidate = f"{base}{individual:03d}{check:02d}"
            if candidate in taken or not has_valid_check_digits(candidate):
                continue
            if isinstance(read_national_id(candidate), InvalidNationalId):
                continue
            return candidate
    raise ValueError(f"no synthetic number left for {birth}")


def scale_birth(index: int) -> datetime.date:
    # Three days apart: 10,000 patients span 1930–2012, each birth date its own.
    return SCALE_FIRST_BIRTH + datetime.timedelta(days=3 * index)
