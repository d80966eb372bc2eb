"""Deterministic synthetic document content (PDF and KITH-like XML) for demo and test data.

Everything here is invented: no real patients, clinicians or results. The text is
Norwegian bokmål and meant to look plausible in the portal, not to be medically
authoritative. The same `DemoDocumentSpec` always gives the same bytes: variation comes
from `random.Random(spec.seed)` only, never from the global generator or the clock.

Seeds divisible by 7 put a deliberately hostile string (`HOSTILE_TEXT`) into the XML
variant, as text, so the portal's "untrusted text renders inert" can be tested against
demo data.
"""

from __future__ import annotations

import base64
import datetime
import functools
import io
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from fpdf import FPDF
from fpdf.fonts import CORE_FONTS_CHARWIDTHS
from lxml import etree
from PIL import Image, ImageDraw, ImageFilter, ImageOps

XML_NAMESPACE = "urn:pjd-portal:demo:kith-like:1"
SYNTHETIC_NOTICE = "Syntetiske testdata – ikke en ekte pasient"
HOSTILE_TEXT = "<script>alert('x')</script>"

# Volven 9602-like: category code -> [(type code, type name)].
_DOCUMENT_TYPES: dict[str, list[tuple[str, str]]] = {
    "A00-1": [("A03-2", "Epikrise"), ("A01-1", "Sammenfatning")],
    "C00-1": [
        ("C01-1", "Prøvesvar medisinsk biokjemi"),
        ("C02-1", "Prøvesvar mikrobiologi"),
        ("C03-1", "Prøvesvar patologi"),
    ],
    "D00-1": [("D01-1", "EKG"), ("D02-1", "Lungefunksjon")],
    "E00-1": [("E01-1", "Radiologibeskrivelse"), ("E02-1", "Nukleærmedisinsk beskrivelse")],
    "I00-1": [("I01-1", "Henvisning"), ("I02-1", "Svar på henvisning")],
}

# Characters outside Windows-1252 (the core fonts' WinAnsiEncoding) that may turn up.
_PDF_REPLACEMENTS = {"≥": ">=", "≤": "<=", "−": "-", "→": "->", "\u00a0": " ", "\u2009": " "}


def document_types() -> dict[str, list[tuple[str, str]]]:
    """Category code -> list of (type_code, type_name), Volven 9602-like."""

    return {category: list(types) for category, types in _DOCUMENT_TYPES.items()}


@dataclass(frozen=True)
class DemoDocumentSpec:
    category: str  # one of "A00-1", "C00-1", "D00-1", "E00-1", "I00-1"
    type_code: str  # e.g. "A03-2"
    type_name: str  # e.g. "Epikrise"
    title: str
    service_date: datetime.date
    author: str  # e.g. "Overlege Anne Berg"
    institution: str  # e.g. "Oslo universitetssykehus HF"
    department: str  # e.g. "Medisinsk klinikk"
    patient_name: str
    patient_birth_date: datetime.date
    seed: int  # for deterministic variation of the text
    # A referral's receiver ("Medisinsk klinikk, Oslo universitetssykehus HF"); the
    # institution and department are then the sender's (a fastlege's legekontor).
    recipient: str = ""


# ---------------------------------------------------------------------------
# Topics: one per plausible document, with templated text.
# Templates use str.format_map() placeholders filled from `_values()`.
# ---------------------------------------------------------------------------

Row = tuple[str, str, str, str]  # (analysis, value, unit, reference range)


@dataclass(frozen=True)
class _Topic:
    title: str
    sections: tuple[tuple[str, str], ...]
    rows: tuple[Row, ...] = field(default=())
    panel: tuple[str, ...] = field(default=())  # keys into _LAB_ANALYTES


_EPIKRISE: tuple[_Topic, ...] = (
    _Topic(
        "Epikrise etter innleggelse for lungebetennelse",
        (
            (
                "Innleggelsesårsak",
                "Pasienten, {alder} år, ble innlagt med feber, hoste og tung pust gjennom {symptomdager} dager. "
                "Ved innkomst temperatur {temp} °C, puls {puls}, blodtrykk {bt} og SpO2 {spo2} % på romluft.",
            ),
            (
                "Funn",
                "CRP {crp} mg/L og leukocytter {lpk} x10^9/L. Røntgen thorax viste fortetning i {side} underlapp, "
                "forenlig med pneumoni. Blodkulturer uten oppvekst.",
            ),
            (
                "Behandling og forløp",
                "Behandlet med benzylpenicillin intravenøst i tre døgn, deretter overgang til fenoksymetylpenicillin "
                "peroralt. Rask klinisk bedring, CRP falt til {crp_lav} mg/L. Utskrevet etter {dager} døgn.",
            ),
            (
                "Videre oppfølging",
                "Fullfører peroral antibiotikakur, til sammen sju dager. Kontroll hos fastlege om {uker} uker med ny CRP. "
                "Kontroll-røntgen thorax vurderes ved vedvarende symptomer.",
            ),
        ),
    ),
    _Topic(
        "Epikrise etter innleggelse for forverring av hjertesvikt",
        (
            (
                "Innleggelsesårsak",
                "Pasienten, {alder} år, med kjent hjertesvikt ble innlagt med økende tung pust, ortopné og "
                "vektoppgang på {kg} kg siste to uker.",
            ),
            (
                "Funn",
                "Bilaterale knatrelyder basalt og pittingødem til knærne. NT-proBNP {ntprobnp} ng/L. "
                "Ekkokardiografi viste ejeksjonsfraksjon omkring {ef} %.",
            ),
            (
                "Behandling og forløp",
                "Behandlet med furosemid intravenøst med god diurese og vektreduksjon på {kg} kg. "
                "Utskrevet i stabil tilstand etter {dager} døgn.",
            ),
            (
                "Videre oppfølging",
                "Daglig veiing; kontakt lege ved vektøkning over 2 kg på tre dager. Kontroll av kreatinin og "
                "kalium hos fastlege om en uke. Time ved hjertesviktpoliklinikken om {uker} uker.",
            ),
        ),
    ),
    _Topic(
        "Epikrise etter innleggelse for nyoppdaget atrieflimmer",
        (
            (
                "Innleggelsesårsak",
                "Pasienten, {alder} år, ble innlagt med hjertebank og uregelmessig puls gjennom {symptomdager} dager.",
            ),
            (
                "Funn",
                "EKG viste atrieflimmer med ventrikkelfrekvens omkring {puls}. Normale elektrolytter og "
                "normal TSH. CHA2DS2-VASc-skår {chads}.",
            ),
            (
                "Behandling og forløp",
                "Frekvensregulert med metoprolol. Startet med antikoagulasjon (apixaban). "
                "Utskrevet etter {dager} døgn med hvilepuls {puls_n}.",
            ),
            (
                "Videre oppfølging",
                "Vurdering av elektrokonvertering ved kardiologisk poliklinikk om {uker} uker. "
                "Fastlege bes kontrollere nyrefunksjon og hemoglobin om tre måneder.",
            ),
        ),
    ),
    _Topic(
        "Epikrise etter innleggelse for forverring av kols",
        (
            (
                "Innleggelsesårsak",
                "Pasienten, {alder} år, med kjent kols ble innlagt med økt tung pust og endret, purulent ekspektorat.",
            ),
            (
                "Funn",
                "Forlenget ekspirium og spredte pipelyder. SpO2 {spo2} % på romluft. Arteriell blodgass viste "
                "lett respiratorisk acidose. CRP {crp_lav} mg/L.",
            ),
            (
                "Behandling og forløp",
                "Behandlet med inhalasjoner, prednisolon 40 mg i fem dager og doksysyklin. "
                "Oksygenbehov avtok gradvis. Utskrevet etter {dager} døgn.",
            ),
            (
                "Videre oppfølging",
                "Røykeslutt er anbefalt og drøftet. Kontroll hos fastlege om {uker} uker. "
                "Henvises til lungerehabilitering.",
            ),
        ),
    ),
    _Topic(
        "Epikrise etter innleggelse for akutt pyelonefritt",
        (
            (
                "Innleggelsesårsak",
                "Pasienten, {alder} år, ble innlagt med feber {temp} °C, frysninger og smerter i {side} flanke.",
            ),
            (
                "Funn",
                "Bankeøm over {side} nyrelosje. CRP {crp} mg/L. Urinstiks positiv for leukocytter og nitritt. "
                "Urindyrkning med oppvekst av E. coli, følsom for mecillinam.",
            ),
            (
                "Behandling og forløp",
                "Behandlet med gentamicin og ampicillin intravenøst, skiftet til pivmecillinam peroralt etter "
                "dyrkningssvar. Feberfri etter to døgn, utskrevet etter {dager} døgn.",
            ),
            (
                "Videre oppfølging",
                "Total behandlingstid ti dager. Ny urinprøve hos fastlege ved residiverende symptomer.",
            ),
        ),
    ),
    _Topic(
        "Epikrise etter innleggelse for lårhalsbrudd",
        (
            (
                "Innleggelsesårsak",
                "Pasienten, {alder} år, falt i hjemmet og ble innlagt med smerter i {side} hofte og "
                "forkortet, utadrotert bein.",
            ),
            (
                "Funn",
                "Røntgen viste dislokert lårhalsbrudd på {side} side. Hemoglobin {hb} g/dL ved innkomst.",
            ),
            (
                "Behandling og forløp",
                "Operert med hemiprotese dagen etter innleggelse. Ukomplisert postoperativt forløp. "
                "Mobilisert med gåstol. Utskrevet etter {dager} døgn.",
            ),
            (
                "Videre oppfølging",
                "Tromboseprofylakse i fire uker. Fjerning av agrafer hos fastlege etter 14 dager. "
                "Fallforebyggende tiltak og vurdering av osteoporosebehandling anbefales.",
            ),
        ),
    ),
)

_SAMMENFATNING: tuple[_Topic, ...] = (
    _Topic(
        "Sammenfatning etter poliklinisk kontroll for type 2-diabetes",
        (
            (
                "Bakgrunn",
                "Pasienten, {alder} år, har hatt type 2-diabetes i {aar} år, behandlet med metformin.",
            ),
            (
                "Aktuelle funn",
                "HbA1c {hba1c} mmol/mol. Blodtrykk {bt}. Ingen tegn til retinopati ved siste øyelegekontroll. "
                "Normal monofilamenttest.",
            ),
            (
                "Vurdering og plan",
                "Tillegg av SGLT2-hemmer er startet. Ny kontroll av HbA1c og nyrefunksjon om {mnd} måneder.",
            ),
        ),
    ),
    _Topic(
        "Sammenfatning av oppfølging for hypertensjon",
        (
            ("Bakgrunn", "Pasienten, {alder} år, har hatt kjent hypertensjon i {aar} år."),
            (
                "Aktuelle funn",
                "Hjemmeblodtrykk i snitt {bt}. Normal kreatinin og kalium. EKG uten tegn til venstre ventrikkelhypertrofi.",
            ),
            (
                "Vurdering og plan",
                "Dosen av amlodipin er økt. Ny blodtrykkskontroll hos fastlege om {uker} uker.",
            ),
        ),
    ),
    _Topic(
        "Sammenfatning etter kontroll ved revmatologisk poliklinikk",
        (
            (
                "Bakgrunn",
                "Pasienten, {alder} år, har seropositiv revmatoid artritt, diagnostisert for {aar} år siden.",
            ),
            (
                "Aktuelle funn",
                "To ømme og ett hovent ledd ved undersøkelsen. CRP {crp_lav} mg/L. DAS28 indikerer lav sykdomsaktivitet.",
            ),
            (
                "Vurdering og plan",
                "Fortsetter metotreksat ukentlig med folsyre. Blodprøvekontroll hver tredje måned hos fastlege. "
                "Ny kontroll ved poliklinikken om {mnd} måneder.",
            ),
        ),
    ),
    _Topic(
        "Sammenfatning av astmautredning",
        (
            (
                "Bakgrunn",
                "Pasienten, {alder} år, er utredet for anfallsvis hoste og tung pust ved anstrengelse.",
            ),
            (
                "Aktuelle funn",
                "Spirometri viste obstruktivitet med signifikant reversibilitet. FeNO {feno} ppb.",
            ),
            (
                "Vurdering og plan",
                "Konklusjon astma. Startet med inhalasjonssteroid og formoterol ved behov. "
                "Kontroll hos fastlege om {uker} uker med vurdering av symptomkontroll.",
            ),
        ),
    ),
)

# analyte key -> (name, unit, low, high, decimals)
_LAB_ANALYTES: dict[str, tuple[str, str, float, float, int]] = {
    "hb": ("Hemoglobin", "g/dL", 11.7, 15.3, 1),
    "lpk": ("Leukocytter", "x10^9/L", 3.5, 10.0, 1),
    "trc": ("Trombocytter", "x10^9/L", 145, 390, 0),
    "crp": ("CRP", "mg/L", 0, 5, 0),
    "na": ("Natrium", "mmol/L", 137, 145, 0),
    "k": ("Kalium", "mmol/L", 3.5, 4.4, 1),
    "krea": ("Kreatinin", "µmol/L", 45, 90, 0),
    "egfr": ("eGFR", "mL/min/1,73m²", 60, 120, 0),
    "hba1c": ("HbA1c", "mmol/mol", 28, 42, 0),
    "gluk": ("Glukose", "mmol/L", 4.0, 6.0, 1),
    "alat": ("ALAT", "U/L", 10, 45, 0),
    "alp": ("ALP", "U/L", 35, 105, 0),
    "bili": ("Bilirubin", "µmol/L", 5, 25, 0),
    "tsh": ("TSH", "mIE/L", 0.5, 3.6, 2),
    "ft4": ("Fritt T4", "pmol/L", 12, 22, 0),
    "ferritin": ("Ferritin", "µg/L", 15, 200, 0),
    "ldl": ("LDL-kolesterol", "mmol/L", 0, 4.0, 1),
    "kol": ("Totalkolesterol", "mmol/L", 3.3, 6.9, 1),
}

_BIOKJEMI: tuple[_Topic, ...] = (
    _Topic(
        "Blodprøver ved årskontroll for diabetes",
        (
            ("Rekvisisjon", "Rekvirert av fastlege ved årskontroll for diabetes. Prøve tatt fastende."),
            ("Analysemetode", "Analysert ved sykehusets laboratorium, akkreditert etter NS-EN ISO 15189."),
        ),
        panel=("hba1c", "gluk", "krea", "egfr", "k", "ldl", "kol"),
    ),
    _Topic(
        "Hematologi og CRP ved mistanke om infeksjon",
        (
            ("Rekvisisjon", "Rekvirert ved feber og allmennsymptomer gjennom {symptomdager} dager."),
            ("Analysemetode", "Hurtiganalyse på akuttlaboratoriet."),
        ),
        panel=("hb", "lpk", "trc", "crp"),
    ),
    _Topic(
        "Leverprøver og elektrolytter",
        (
            ("Rekvisisjon", "Rekvirert ved kontroll av medikamentell behandling."),
            ("Analysemetode", "Analysert ved sykehusets laboratorium, akkreditert etter NS-EN ISO 15189."),
        ),
        panel=("na", "k", "krea", "alat", "alp", "bili"),
    ),
    _Topic(
        "Thyreoideaprøver og ferritin",
        (
            ("Rekvisisjon", "Rekvirert ved tretthet og vektendring."),
            ("Analysemetode", "Analysert ved sykehusets laboratorium, akkreditert etter NS-EN ISO 15189."),
        ),
        panel=("tsh", "ft4", "ferritin", "hb"),
    ),
)

_MIKROBIOLOGI: tuple[_Topic, ...] = (
    _Topic(
        "Urindyrkning med resistensbestemmelse",
        (
            ("Materiale", "Midtstrømsurin, tatt {prove_dato}."),
            (
                "Tolkning",
                "Signifikant oppvekst av Escherichia coli. Følsom for mecillinam, nitrofurantoin og trimetoprim.",
            ),
        ),
        rows=(
            ("Dyrkning", "Escherichia coli", "", ""),
            ("Kimtall", ">100 000", "CFU/mL", "<10 000"),
            ("Mecillinam", "S", "", "S/I/R"),
            ("Nitrofurantoin", "S", "", "S/I/R"),
            ("Trimetoprim", "S", "", "S/I/R"),
            ("Ciprofloksacin", "S", "", "S/I/R"),
        ),
    ),
    _Topic(
        "Blodkultur, to sett",
        (
            ("Materiale", "Blodkultur, to sett (aerob og anaerob flaske), tatt {prove_dato}."),
            ("Tolkning", "Ingen oppvekst etter fem døgns inkubasjon."),
        ),
        rows=(
            ("Blodkultur sett 1", "Ingen oppvekst", "", "Ingen oppvekst"),
            ("Blodkultur sett 2", "Ingen oppvekst", "", "Ingen oppvekst"),
            ("Inkubasjonstid", "5", "døgn", ""),
        ),
    ),
    _Topic(
        "Halsprøve, påvisning av streptokokker gruppe A",
        (
            ("Materiale", "Penselprøve fra tonsiller, tatt {prove_dato}."),
            ("Tolkning", "Streptokokker gruppe A påvist. Følsom for penicillin."),
        ),
        rows=(
            ("Streptokokker gruppe A (PCR)", "Påvist", "", "Ikke påvist"),
            ("Penicillin", "S", "", "S/I/R"),
            ("Erytromycin", "S", "", "S/I/R"),
        ),
    ),
    _Topic(
        "Luftveispanel, PCR",
        (
            ("Materiale", "Nasofarynksprøve, tatt {prove_dato}."),
            ("Tolkning", "Influensa A-virus påvist. Øvrige agens ikke påvist."),
        ),
        rows=(
            ("Influensa A-virus", "Påvist", "", "Ikke påvist"),
            ("Influensa B-virus", "Ikke påvist", "", "Ikke påvist"),
            ("SARS-CoV-2", "Ikke påvist", "", "Ikke påvist"),
            ("RS-virus", "Ikke påvist", "", "Ikke påvist"),
        ),
    ),
)

_PATOLOGI: tuple[_Topic, ...] = (
    _Topic(
        "Histologi, hudbiopsi fra rygg",
        (
            (
                "Klinisk opplysning",
                "Pigmentert lesjon på ryggen, økende i størrelse. Spørsmål om dysplastisk nevus.",
            ),
            (
                "Mikroskopi",
                "Snittene viser en sammensatt nevus med lett arkitektonisk atypi. Ikke holdepunkter for malignitet.",
            ),
            ("Diagnose", "Dysplastisk nevus med lavgradig atypi, fritt eksidert."),
        ),
        rows=(
            ("Materiale", "Hudeksisjon", "", ""),
            ("Preparatets største mål", "{mm}", "mm", ""),
            ("Minste avstand til reseksjonsrand", "{mm_rand}", "mm", ">1"),
            ("Antall snitt undersøkt", "{snitt}", "stk", ""),
        ),
    ),
    _Topic(
        "Histologi, polypp fra tykktarm",
        (
            ("Klinisk opplysning", "Polypp i sigmoideum påvist ved koloskopi, fjernet med slynge."),
            ("Mikroskopi", "Tubulært adenom med lavgradig dysplasi. Stilken er fri for adenomvev."),
            ("Diagnose", "Tubulært adenom, lavgradig dysplasi, radikalt fjernet."),
        ),
        rows=(
            ("Materiale", "Polypp, sigmoideum", "", ""),
            ("Polyppens største mål", "{mm}", "mm", ""),
            ("Dysplasigrad", "Lavgradig", "", ""),
            ("Antall snitt undersøkt", "{snitt}", "stk", ""),
        ),
    ),
    _Topic(
        "Histologi, ventrikkelbiopsier",
        (
            ("Klinisk opplysning", "Dyspepsi. Gastroskopi med biopsier fra antrum og corpus."),
            (
                "Mikroskopi",
                "Kronisk aktiv gastritt i antrum. Helicobacter-lignende staver påvist. Ikke intestinal metaplasi.",
            ),
            ("Diagnose", "Kronisk aktiv Helicobacter pylori-gastritt."),
        ),
        rows=(
            ("Materiale", "Biopsier, antrum og corpus", "", ""),
            ("Antall biopsier", "{biopsier}", "stk", ""),
            ("Helicobacter pylori", "Påvist", "", "Ikke påvist"),
            ("Intestinal metaplasi", "Ikke påvist", "", "Ikke påvist"),
        ),
    ),
)

_EKG: tuple[_Topic, ...] = (
    _Topic(
        "Hvile-EKG ved brystsmerter",
        (
            ("Indikasjon", "Brystsmerter ved anstrengelse. Vurdering av iskemitegn."),
            (
                "Funn",
                "Sinusrytme, frekvens {puls_n}/min. PQ {pq} ms, QRS {qrs} ms, QTc {qtc} ms. "
                "Normal akse. Ingen patologiske Q-takker. Ingen ST-endringer.",
            ),
            ("Konklusjon", "Normalt hvile-EKG. Utelukker ikke koronarsykdom; belastningstest vurderes."),
        ),
    ),
    _Topic(
        "EKG ved hjertebank",
        (
            ("Indikasjon", "Anfallsvis hjertebank."),
            (
                "Funn",
                "Atrieflimmer med ventrikkelfrekvens omkring {puls}/min. QRS {qrs} ms. Uspesifikke ST-T-forandringer.",
            ),
            ("Konklusjon", "Atrieflimmer med rask ventrikkelrespons. Sammenlign med tidligere EKG."),
        ),
    ),
    _Topic(
        "Arbeids-EKG",
        (
            ("Indikasjon", "Utredning av mulig stabil angina pectoris."),
            (
                "Funn",
                "Belastet til {watt} W, {pct} % av forventet. Makspuls {puls}/min. Blodtrykksrespons normal. "
                "Ingen brystsmerter. Ingen signifikante ST-senkninger.",
            ),
            ("Konklusjon", "Negativ arbeidsbelastning ved god belastningsgrad."),
        ),
    ),
    _Topic(
        "Langtids-EKG (Holter), 24 timer",
        (
            ("Indikasjon", "Svimmelhet og episoder med hjertebank."),
            (
                "Funn",
                "Sinusrytme hele registreringen, frekvens {puls_n}–{puls}/min. Enkelte supraventrikulære "
                "ekstrasystoler. Ingen pauser over 2 sekunder. Symptomdagbok uten korrelasjon til arytmi.",
            ),
            ("Konklusjon", "Ingen sikker arytmi som forklarer symptomene."),
        ),
    ),
)

_LUNGEFUNKSJON: tuple[_Topic, ...] = (
    _Topic(
        "Spirometri med reversibilitetstest",
        (
            ("Indikasjon", "Langvarig hoste og tung pust ved anstrengelse."),
            (
                "Resultater",
                "FEV1 {fev1} L ({fev1_pct} % av forventet), FVC {fvc} L ({fvc_pct} % av forventet), "
                "FEV1/FVC {ratio}. Etter salbutamol økte FEV1 med {rev} %.",
            ),
            (
                "Vurdering",
                "Obstruktiv ventilasjonsinnskrenkning med signifikant reversibilitet, forenlig med astma.",
            ),
        ),
    ),
    _Topic(
        "Spirometri ved kontroll av kols",
        (
            ("Indikasjon", "Årlig kontroll av kjent kols."),
            (
                "Resultater",
                "FEV1 {fev1} L ({fev1_pct} % av forventet), FVC {fvc} L, FEV1/FVC {ratio} etter bronkodilatasjon.",
            ),
            ("Vurdering", "Moderat, ikke-reversibel obstruksjon. Uendret fra forrige måling."),
        ),
    ),
    _Topic(
        "Full lungefunksjonsundersøkelse med diffusjonskapasitet",
        (
            ("Indikasjon", "Tung pust og nedsatt fysisk kapasitet."),
            (
                "Resultater",
                "FEV1 {fev1} L, FVC {fvc} L, FEV1/FVC {ratio}. Total lungekapasitet {tlc_pct} % av forventet. "
                "Diffusjonskapasitet (DLCO) {dlco_pct} % av forventet.",
            ),
            ("Vurdering", "Lett nedsatt diffusjonskapasitet. Ingen obstruksjon. Vurder CT thorax."),
        ),
    ),
)

_RADIOLOGI: tuple[_Topic, ...] = (
    _Topic(
        "Røntgen thorax",
        (
            ("Undersøkelse", "Røntgen thorax, front og side."),
            ("Klinisk problemstilling", "Feber og hoste. Spørsmål om pneumoni."),
            (
                "Beskrivelse",
                "Fortetning i {side} underlapp med luftbronkogram. Ingen pleuravæske. Normal hjertestørrelse. "
                "Ingen pneumothorax.",
            ),
            ("Konklusjon", "Funn forenlig med pneumoni i {side} underlapp."),
        ),
    ),
    _Topic(
        "CT caput uten kontrast",
        (
            ("Undersøkelse", "CT caput uten intravenøs kontrast."),
            ("Klinisk problemstilling", "Akutt innsatt hodepine. Spørsmål om blødning."),
            (
                "Beskrivelse",
                "Ingen intrakraniell blødning. Ingen sikre tegn til akutt infarkt. Normal ventrikkelvidde. "
                "Ingen masseeffekt.",
            ),
            ("Konklusjon", "Ingen intrakraniell blødning eller annen akutt patologi."),
        ),
    ),
    _Topic(
        "MR kne",
        (
            ("Undersøkelse", "MR av {side} kne uten kontrast."),
            ("Klinisk problemstilling", "Vridningsskade, låsningsepisoder. Spørsmål om menisklesjon."),
            (
                "Beskrivelse",
                "Horisontal ruptur i bakre horn av mediale menisk. Intakte korsbånd og kollateralligamenter. "
                "Lett leddvæske. Normal brusk.",
            ),
            ("Konklusjon", "Ruptur i mediale menisk, bakre horn."),
        ),
    ),
    _Topic(
        "CT abdomen og bekken med kontrast",
        (
            ("Undersøkelse", "CT abdomen og bekken i portovenøs fase."),
            (
                "Klinisk problemstilling",
                "Smerter i høyre fossa iliaca, forhøyet CRP. Spørsmål om appendisitt.",
            ),
            (
                "Beskrivelse",
                "Fortykket appendiks med diameter {mm} mm og omkringliggende fettvevsreaksjon. "
                "Ingen fri luft. Ingen abscess.",
            ),
            ("Konklusjon", "Funn forenlig med akutt appendisitt uten tegn til perforasjon."),
        ),
    ),
    _Topic(
        "Ultralyd abdomen",
        (
            ("Undersøkelse", "Ultralyd av øvre abdomen."),
            ("Klinisk problemstilling", "Smerter under høyre kostalbue etter måltid."),
            (
                "Beskrivelse",
                "Flere konkrementer i galleblæren, største {mm} mm. Galleblæreveggen er ikke fortykket. "
                "Normalt vide galleganger. Lever, nyrer og milt uten anmerkning.",
            ),
            ("Konklusjon", "Cholecystolithiasis uten tegn til cholecystitt."),
        ),
    ),
)

_NUKLEAER: tuple[_Topic, ...] = (
    _Topic(
        "Skjelettscintigrafi",
        (
            ("Undersøkelse", "Helkroppsscintigrafi av skjelettet etter injeksjon av Tc-99m-HDP."),
            ("Klinisk problemstilling", "Ryggsmerter. Spørsmål om skjelettmetastaser."),
            (
                "Beskrivelse",
                "Degenerativt opptak i nedre lumbalcolumna og i begge kne. Ingen fokale opptak mistenkelige "
                "for metastaser.",
            ),
            ("Konklusjon", "Degenerative forandringer. Ingen holdepunkter for skjelettmetastaser."),
        ),
    ),
    _Topic(
        "Myokardscintigrafi",
        (
            ("Undersøkelse", "Myokardperfusjonsscintigrafi i hvile og etter farmakologisk belastning."),
            ("Klinisk problemstilling", "Atypiske brystsmerter. Spørsmål om reversibel iskemi."),
            (
                "Beskrivelse",
                "Normal perfusjon i alle segmenter både i hvile og under belastning. "
                "Ejeksjonsfraksjon {ef_normal} %.",
            ),
            ("Konklusjon", "Ingen holdepunkter for reversibel iskemi eller infarkt."),
        ),
    ),
    _Topic(
        "Thyreoideascintigrafi",
        (
            ("Undersøkelse", "Scintigrafi av thyreoidea med Tc-99m-pertechnetat."),
            ("Klinisk problemstilling", "Hypertyreose. Spørsmål om toksisk knute."),
            (
                "Beskrivelse",
                "Økt opptak i en knute på {mm} mm i {side} lapp, med supprimert opptak i resten av kjertelen.",
            ),
            ("Konklusjon", "Funn forenlig med toksisk adenom i {side} thyreoidealapp."),
        ),
    ),
)

_HENVISNING: tuple[_Topic, ...] = (
    _Topic(
        "Henvisning til kardiologisk poliklinikk",
        (
            ("Henvisningsårsak", "Utredning av brystsmerter ved anstrengelse."),
            (
                "Problemstilling",
                "Pasienten, {alder} år, har siste {uker} uker hatt trykkende smerter i brystet ved gange i "
                "motbakke, som går over i hvile. Hvile-EKG normalt. Blodtrykk {bt}. LDL-kolesterol forhøyet.",
            ),
            ("Aktuelle legemidler", "Acetylsalisylsyre 75 mg, atorvastatin 20 mg."),
            (
                "Spørsmål",
                "Ønsker vurdering med tanke på stabil angina pectoris og eventuell videre utredning.",
            ),
        ),
    ),
    _Topic(
        "Henvisning til ortopedisk poliklinikk",
        (
            ("Henvisningsårsak", "Kneskade med vedvarende plager."),
            (
                "Problemstilling",
                "Pasienten, {alder} år, vred {side} kne for {uker} uker siden. Siden hevelse og låsningsepisoder. "
                "Ømhet over mediale leddspalte, positiv McMurray.",
            ),
            ("Spørsmål", "Ønsker vurdering av menisklesjon og behov for MR eller artroskopi."),
        ),
    ),
    _Topic(
        "Henvisning til gastromedisinsk poliklinikk",
        (
            ("Henvisningsårsak", "Jernmangelanemi uten kjent årsak."),
            (
                "Problemstilling",
                "Pasienten, {alder} år, har hemoglobin {hb} g/dL og lav ferritin. Ingen synlig blødning. "
                "Vekttap på {kg} kg siste halvår.",
            ),
            (
                "Spørsmål",
                "Ønsker gastroskopi og koloskopi for å utelukke blødningskilde i mage-tarm-kanalen.",
            ),
        ),
    ),
    _Topic(
        "Henvisning til nevrologisk poliklinikk",
        (
            ("Henvisningsårsak", "Hyppig hodepine med endret karakter."),
            (
                "Problemstilling",
                "Pasienten, {alder} år, har siste {mnd} måneder hatt tiltagende hodepine, tidvis med kvalme. "
                "Normal nevrologisk undersøkelse. Blodtrykk {bt}.",
            ),
            ("Spørsmål", "Ønsker vurdering av behov for bildediagnostikk og råd om forebyggende behandling."),
        ),
    ),
    _Topic(
        "Henvisning til hudpoliklinikk",
        (
            ("Henvisningsårsak", "Pigmentert hudforandring med endring."),
            (
                "Problemstilling",
                "Pasienten, {alder} år, har en føflekk på ryggen på {mm} mm som har vokst og blitt ujevnt pigmentert.",
            ),
            ("Spørsmål", "Ønsker dermatoskopisk vurdering og eventuell eksisjon."),
        ),
    ),
)

_SVAR_HENVISNING: tuple[_Topic, ...] = (
    _Topic(
        "Svar på henvisning fra kardiologisk poliklinikk",
        (
            ("Vurdering", "Pasienten, {alder} år, er vurdert for brystsmerter ved anstrengelse."),
            (
                "Funn",
                "Normalt hvile-EKG. Arbeids-EKG belastet til {watt} W uten iskemitegn. Ekkokardiografi normal.",
            ),
            (
                "Konklusjon og plan",
                "Lav sannsynlighet for koronarsykdom. Ingen videre utredning planlagt. "
                "Risikofaktorer følges opp hos fastlege.",
            ),
        ),
    ),
    _Topic(
        "Svar på henvisning fra ortopedisk poliklinikk",
        (
            ("Vurdering", "Pasienten, {alder} år, er vurdert for plager i {side} kne."),
            ("Funn", "MR viser ruptur i mediale menisk. God bevegelighet, stabilt kne."),
            (
                "Konklusjon og plan",
                "Anbefaler fysioterapi i {uker} uker. Ny vurdering ved vedvarende låsninger.",
            ),
        ),
    ),
    _Topic(
        "Svar på henvisning fra gastromedisinsk poliklinikk",
        (
            ("Vurdering", "Pasienten, {alder} år, er utredet for jernmangelanemi."),
            (
                "Funn",
                "Gastroskopi med biopsier viste cøliaki-forenlige forandringer. Koloskopi uten anmerkning.",
            ),
            (
                "Konklusjon og plan",
                "Sannsynlig cøliaki. Glutenfritt kosthold og jerntilskudd. Kontroll av hemoglobin og "
                "transglutaminase-antistoff hos fastlege om {mnd} måneder.",
            ),
        ),
    ),
    _Topic(
        "Svar på henvisning fra nevrologisk poliklinikk",
        (
            ("Vurdering", "Pasienten, {alder} år, er vurdert for tiltagende hodepine."),
            ("Funn", "Normal nevrologisk status. MR caput uten patologiske funn."),
            (
                "Konklusjon og plan",
                "Migrene uten aura. Startet med forebyggende behandling. Kontroll hos fastlege om {mnd} måneder.",
            ),
        ),
    ),
)

# Topic lists by document kind; a kind is derived from the category and type name.
_TOPICS: dict[str, tuple[_Topic, ...]] = {
    "epikrise": _EPIKRISE,
    "sammenfatning": _SAMMENFATNING,
    "biokjemi": _BIOKJEMI,
    "mikrobiologi": _MIKROBIOLOGI,
    "patologi": _PATOLOGI,
    "ekg": _EKG,
    "lungefunksjon": _LUNGEFUNKSJON,
    "radiologi": _RADIOLOGI,
    "nukleaer": _NUKLEAER,
    "henvisning": _HENVISNING,
    "svar": _SVAR_HENVISNING,
}

# (category, word in the lower-cased type name, kind); first match wins.
_KIND_RULES: tuple[tuple[str, str, str], ...] = (
    ("A00-1", "sammenfatning", "sammenfatning"),
    ("C00-1", "mikrobiologi", "mikrobiologi"),
    ("C00-1", "patologi", "patologi"),
    ("D00-1", "lunge", "lungefunksjon"),
    ("D00-1", "spirometri", "lungefunksjon"),
    ("E00-1", "nukleær", "nukleaer"),
    ("I00-1", "svar", "svar"),
)
_DEFAULT_KIND = {
    "A00-1": "epikrise",
    "C00-1": "biokjemi",
    "D00-1": "ekg",
    "E00-1": "radiologi",
    "I00-1": "henvisning",
}

_TYPE_PREFIX = {
    "biokjemi": "Prøvesvar",
    "mikrobiologi": "Prøvesvar",
    "patologi": "Prøvesvar",
}


def _kind(category: str, type_name: str) -> str:
    lowered = type_name.lower()
    for rule_category, word, kind in _KIND_RULES:
        if rule_category == category and word in lowered:
            return kind
    return _DEFAULT_KIND.get(category, "epikrise")


def _topic(rng: random.Random, category: str, type_name: str) -> _Topic:
    """The first draw from `rng`: make_title() and the renderers agree on the topic."""

    return rng.choice(_TOPICS[_kind(category, type_name)])


def make_title(category: str, type_name: str, seed: int) -> str:
    """A document title matching the text that rendering the same seed produces."""

    topic = _topic(random.Random(seed), category, type_name)
    prefix = _TYPE_PREFIX.get(_kind(category, type_name), "")
    return f"{prefix}: {topic.title[0].lower()}{topic.title[1:]}" if prefix else topic.title


# ---------------------------------------------------------------------------
# Who writes what: the authors of the demo documents, by document kind and workplace.
# Invented people; their HPR numbers come from `synthetic_hpr()`.
# ---------------------------------------------------------------------------

HOSPITAL = "sykehus"
LEGEVAKT = "legevakt"
LEGEKONTOR = "legekontor"

_CLINICAL_KINDS = frozenset({"epikrise", "sammenfatning", "ekg", "lungefunksjon", "svar"})


@dataclass(frozen=True)
class DemoAuthor:
    title: str  # "Overlege", "LIS-lege", "Bioingeniør", "Fastlege" ...
    name: str
    qualification: str  # the line under the name in the signature block
    kinds: frozenset[str]  # the document kinds (`document_kind()`) they write
    workplace: str  # HOSPITAL, LEGEVAKT or LEGEKONTOR
    office: str = ""  # a fastlege's legekontor: the sender of their referrals

    @property
    def display(self) -> str:
        return f"{self.title} {self.name}"


AUTHOR_ROSTER: tuple[DemoAuthor, ...] = (
    DemoAuthor("Overlege", "Anne Berg", "Spesialist i indremedisin", _CLINICAL_KINDS, HOSPITAL),
    DemoAuthor("Overlege", "Mette Lie", "Spesialist i hjertesykdommer", _CLINICAL_KINDS, HOSPITAL),
    DemoAuthor("LIS-lege", "Ali Khan", "Lege i spesialisering, indremedisin", _CLINICAL_KINDS, HOSPITAL),
    DemoAuthor("Overlege", "Siri Aune", "Spesialist i hjertesykdommer", _CLINICAL_KINDS, HOSPITAL),
    DemoAuthor("LIS-lege", "Omar Haddad", "Lege i spesialisering, indremedisin", _CLINICAL_KINDS, HOSPITAL),
    DemoAuthor("Overlege", "Tore Lian", "Spesialist i lungesykdommer", _CLINICAL_KINDS, HOSPITAL),
    DemoAuthor(
        "Bioingeniør", "Tove Ruud", "Bioingeniør, medisinsk biokjemi", frozenset({"biokjemi"}), HOSPITAL
    ),
    DemoAuthor("Overlege", "Guri Moen", "Spesialist i medisinsk biokjemi", frozenset({"biokjemi"}), HOSPITAL),
    DemoAuthor(
        "Bioingeniør", "Eirik Holm", "Bioingeniør, medisinsk biokjemi", frozenset({"biokjemi"}), HOSPITAL
    ),
    DemoAuthor(
        "Overlege", "Per Strand", "Spesialist i medisinsk mikrobiologi", frozenset({"mikrobiologi"}), HOSPITAL
    ),
    DemoAuthor(
        "Overlege",
        "Nina Brekke",
        "Spesialist i medisinsk mikrobiologi",
        frozenset({"mikrobiologi"}),
        HOSPITAL,
    ),
    DemoAuthor("Overlege", "Ragnhild Sæther", "Spesialist i patologi", frozenset({"patologi"}), HOSPITAL),
    DemoAuthor(
        "LIS-lege", "Henrik Moe", "Lege i spesialisering, patologi", frozenset({"patologi"}), HOSPITAL
    ),
    DemoAuthor("Overlege", "Hanne Rø", "Spesialist i radiologi", frozenset({"radiologi"}), HOSPITAL),
    DemoAuthor("Overlege", "Jon Vik", "Spesialist i radiologi", frozenset({"radiologi"}), HOSPITAL),
    DemoAuthor(
        "LIS-lege", "Sara Nygård", "Lege i spesialisering, radiologi", frozenset({"radiologi"}), HOSPITAL
    ),
    DemoAuthor("Overlege", "Lars Fosse", "Spesialist i nukleærmedisin", frozenset({"nukleaer"}), HOSPITAL),
    DemoAuthor("Overlege", "Kristin Dahl", "Spesialist i nukleærmedisin", frozenset({"nukleaer"}), HOSPITAL),
    DemoAuthor("Legevaktslege", "Ida Bakke", "Spesialist i allmennmedisin", frozenset({"ekg"}), LEGEVAKT),
    DemoAuthor("Legevaktslege", "Martin Hauge", "Lege", frozenset({"ekg"}), LEGEVAKT),
    DemoAuthor(
        "Bioingeniør",
        "Lene Solberg",
        "Bioingeniør, legevaktens laboratorium",
        frozenset({"biokjemi"}),
        LEGEVAKT,
    ),
    DemoAuthor(
        "Fastlege",
        "Kari Nilsen",
        "Spesialist i allmennmedisin",
        frozenset({"henvisning"}),
        LEGEKONTOR,
        office="Storgata legekontor",
    ),
    DemoAuthor(
        "Fastlege",
        "Morten Aas",
        "Spesialist i allmennmedisin",
        frozenset({"henvisning"}),
        LEGEKONTOR,
        office="Fjordgløtt legesenter",
    ),
    DemoAuthor(
        "Fastlege",
        "Eva Lund",
        "Lege i spesialisering, allmennmedisin",
        frozenset({"henvisning"}),
        LEGEKONTOR,
        office="Bryggen legekontor",
    ),
)
_AUTHORS_BY_DISPLAY = {author.display: author for author in AUTHOR_ROSTER}


def document_kind(category: str, type_name: str) -> str:
    """The kind of document a category and type name make: "epikrise", "biokjemi", "radiologi" ..."""

    return _kind(category, type_name)


def authors_for(kind: str, workplace: str = HOSPITAL) -> tuple[DemoAuthor, ...]:
    """Those who write documents of `kind` at a `workplace` (a referral's at a legekontor, always)."""

    if kind == "henvisning":
        workplace = LEGEKONTOR
    return tuple(a for a in AUTHOR_ROSTER if kind in a.kinds and a.workplace == workplace)


def author_by_display(display: str) -> DemoAuthor | None:
    return _AUTHORS_BY_DISPLAY.get(display)


def synthetic_hpr(author: str) -> str:
    """An HPR-like number for an author: 9 digits from "98", never a real one (those are lower)
    nor one of the dev identity provider's users' (9100000xx). Deterministic, from the name."""

    return f"98{zlib.crc32(author.encode('utf-8')) % 10_000_000:07d}"


# ---------------------------------------------------------------------------
# Content assembly.
# ---------------------------------------------------------------------------


def _decimal(value: float, decimals: int) -> str:
    """Norwegian decimal comma."""

    return f"{value:.{decimals}f}".replace(".", ",")


def _age(birth: datetime.date, on: datetime.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _no_date(day: datetime.date) -> str:
    return day.strftime("%d.%m.%Y")


def _values(rng: random.Random, spec: DemoDocumentSpec) -> dict[str, str]:
    fev1 = rng.uniform(1.3, 3.6)
    ratio = rng.uniform(0.48, 0.82)
    puls_n = rng.randint(52, 88)
    return {
        "alder": str(max(_age(spec.patient_birth_date, spec.service_date), 0)),
        "symptomdager": str(rng.randint(2, 7)),
        "dager": str(rng.randint(2, 9)),
        "temp": _decimal(rng.uniform(38.1, 39.9), 1),
        "puls": str(rng.randint(104, 148)),
        "puls_n": str(puls_n),
        "bt": f"{rng.randint(118, 168)}/{rng.randint(66, 98)}",
        "spo2": str(rng.randint(86, 94)),
        "crp": str(rng.randint(80, 280)),
        "crp_lav": str(rng.randint(6, 40)),
        "lpk": _decimal(rng.uniform(11.0, 19.5), 1),
        "hb": _decimal(rng.uniform(9.2, 11.4), 1),
        "side": rng.choice(("høyre", "venstre")),
        "uker": str(rng.choice((2, 4, 6, 8))),
        "mnd": str(rng.choice((3, 6, 12))),
        "aar": str(rng.randint(2, 15)),
        "kg": str(rng.randint(3, 7)),
        "ntprobnp": str(rng.randint(1200, 9000)),
        "ef": str(rng.randint(25, 45)),
        "ef_normal": str(rng.randint(55, 68)),
        "chads": str(rng.randint(1, 5)),
        "hba1c": str(rng.randint(50, 78)),
        "feno": str(rng.randint(35, 90)),
        "pq": str(rng.randint(140, 200)),
        "qrs": str(rng.randint(84, 110)),
        "qtc": str(rng.randint(400, 455)),
        "watt": str(rng.choice((150, 175, 200, 225))),
        "pct": str(rng.randint(90, 125)),
        "fev1": _decimal(fev1, 2),
        "fvc": _decimal(fev1 / ratio, 2),
        "ratio": _decimal(ratio, 2),
        "fev1_pct": str(rng.randint(48, 85)),
        "fvc_pct": str(rng.randint(80, 105)),
        "rev": str(rng.randint(13, 25)),
        "tlc_pct": str(rng.randint(82, 100)),
        "dlco_pct": str(rng.randint(58, 74)),
        "mm": str(rng.randint(5, 24)),
        "mm_rand": str(rng.randint(2, 6)),
        "snitt": str(rng.randint(3, 8)),
        "biopsier": str(rng.randint(2, 5)),
        "prove_dato": _no_date(spec.service_date - datetime.timedelta(days=rng.randint(1, 3))),
    }


def _lab_rows(rng: random.Random, panel: Sequence[str]) -> tuple[list[Row], list[str]]:
    """Analysis rows and the names of analyses outside their reference range."""

    rows: list[Row] = []
    abnormal: list[str] = []
    for key in panel:
        name, unit, low, high, decimals = _LAB_ANALYTES[key]
        span = high - low
        roll = rng.random()
        if roll < 0.15 and low > 0:
            value = rng.uniform(low - 0.25 * span, low)
        elif roll < 0.3:
            value = rng.uniform(high, high + 0.6 * span)
        else:
            value = rng.uniform(low, high)
        value = max(value, 0.0)
        shown = _decimal(value, decimals)
        if float(shown.replace(",", ".")) < low or float(shown.replace(",", ".")) > high:
            abnormal.append(name)
        reference = (
            f"<{_decimal(high, decimals)}"
            if low == 0
            else f"{_decimal(low, decimals)}–{_decimal(high, decimals)}"
        )
        rows.append((name, shown, unit, reference))
    return rows, abnormal


@dataclass(frozen=True)
class _Content:
    topic: _Topic
    values: dict[str, str]
    sections: list[tuple[str, str]]
    rows: list[Row]


def _content(spec: DemoDocumentSpec) -> _Content:
    rng = random.Random(spec.seed)
    topic = _topic(rng, spec.category, spec.type_name)
    values = _values(rng, spec)
    sections = [(heading, text.format_map(values)) for heading, text in topic.sections]
    rows = [(n, v.format_map(values), u, r) for n, v, u, r in topic.rows]
    if topic.panel:
        lab_rows, abnormal = _lab_rows(rng, topic.panel)
        rows.extend(lab_rows)
        comment = (
            "Verdier utenfor referanseområdet: " + ", ".join(abnormal) + ". Vurderes av rekvirent."
            if abnormal
            else "Alle analyser innenfor referanseområdet."
        )
        sections.insert(1, ("Kommentar", comment))
    return _Content(topic=topic, values=values, sections=sections, rows=rows)


# ---------------------------------------------------------------------------
# PDF.
#
# Real clinical PDFs are tens to hundreds of kilobytes: letter templates carry a raster
# letterhead, radiology reports key images. The demo's do too, so the portal's size
# handling meets realistic sizes: every page repeats an institution letterhead (a JPEG,
# embedded once per document), radiology reports add a key image. The images are
# generated once per institution or variant and cached (`functools.cache`), and fpdf2
# embeds JPEG bytes as they are (DCTDecode), so a document costs only its text. The
# text is laid out here (greedy word wrap on the core fonts' widths, `FPDF.text()`)
# rather than with `multi_cell()`, whose line breaking is an order of magnitude slower
# and made seeding a thousand documents slow. Fonts stay the core Helvetica
# (WinAnsiEncoding, not embedded), so the text remains searchable as plain strings.
# ---------------------------------------------------------------------------

_PAGE_HEIGHT = 297.0
_LEFT = 20.0
_WIDTH = 170.0
_TOP = 42.0  # below the letterhead and the patient line
_BOTTOM = 275.0  # above the footer
_LETTERHEAD_PX = (1800, 240)
_KEY_IMAGE_PX = 640


def _pdf_text(text: str) -> str:
    """Text the core fonts (Windows-1252) can show; anything else becomes '?'."""

    for old, new in _PDF_REPLACEMENTS.items():
        text = text.replace(old, new)
    return text.encode("cp1252", errors="replace").decode("cp1252")


def _width_key(char: str) -> str:
    # The core fonts' width tables are keyed by the Windows-1252 byte, as a character.
    if ord(char) < 256:
        return char
    return chr(char.encode("cp1252", errors="replace")[0])


def _text_width(text: str, style: str, size: float) -> float:
    widths = CORE_FONTS_CHARWIDTHS["helvetica" + style]
    return sum(widths.get(_width_key(c), 556) for c in text) * size * 0.001 * 25.4 / 72


def _wrap(text: str, style: str, size: float, width: float) -> list[str]:
    space = _text_width(" ", style, size)
    lines: list[str] = []
    words: list[str] = []
    used = 0.0
    for word in text.split():
        word_width = _text_width(word, style, size)
        if words and used + space + word_width > width:
            lines.append(" ".join(words))
            words, used = [word], word_width
        else:
            used += (space if words else 0.0) + word_width
            words.append(word)
    lines.append(" ".join(words))
    return lines


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, optimize=False, progressive=False)
    return buffer.getvalue()


@functools.cache
def _letterhead_jpeg(institution: str) -> bytes:
    """A letterhead band for an institution: its colour, an emblem and paper grain (~55 KB)."""

    width, height = _LETTERHEAD_PX
    digest = zlib.crc32(institution.encode("utf-8"))
    rng = random.Random(digest)
    hue = ((digest % 6) * 40, 60 + (digest >> 4) % 60, 110 + (digest >> 8) % 60)
    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height)).point(lambda v: 150 + v // 3)
    fade = Image.linear_gradient("L").rotate(90).resize((width, height))  # dark left, light right
    band = Image.composite(Image.new("L", (width, height), 40), grain, ImageOps.invert(fade))
    draw = ImageDraw.Draw(band)
    cx, cy, r = width - 150, height // 2, 85
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=70, width=14)
    draw.rectangle((cx - 18, cy - 60, cx + 18, cy + 60), fill=70)
    draw.rectangle((cx - 60, cy - 18, cx + 60, cy + 18), fill=70)
    for i in range(8):  # a few thin rules, as printed letterheads have
        y = 20 + i * 28
        draw.line((width // 2, y, width - 300, y), fill=200 + i * 5, width=2)
    coloured = ImageOps.colorize(band, hue, (250, 250, 247))
    return _jpeg(coloured, 80)


@functools.cache
def _key_image_jpeg(modality: str, variant: int) -> bytes:
    """A synthetic, obviously non-diagnostic cross-section for a radiology report (~100 KB)."""

    size = _KEY_IMAGE_PX
    rng = random.Random(f"{modality}:{variant}")
    shapes = Image.new("L", (size, size), 8)
    draw = ImageDraw.Draw(shapes)
    centre = size // 2
    if modality in {"CT", "MR"}:
        rx, ry = rng.randint(230, 270), rng.randint(170, 220)
        draw.ellipse((centre - rx, centre - ry, centre + rx, centre + ry), fill=95)
        draw.ellipse((centre - rx + 14, centre - ry + 14, centre + rx - 14, centre + ry - 14), fill=60)
        for _ in range(rng.randint(5, 9)):  # organ-like blobs
            x, y = rng.randint(centre - 150, centre + 150), rng.randint(centre - 110, centre + 110)
            a, b = rng.randint(25, 80), rng.randint(20, 60)
            draw.ellipse((x - a, y - b, x + a, y + b), fill=rng.randint(70, 170))
        draw.ellipse((centre - 28, centre + ry - 90, centre + 28, centre + ry - 34), fill=235)  # vertebra
    elif modality == "UL":
        draw.pieslice((centre - 300, -200, centre + 300, size), 60, 120, fill=70)
        for _ in range(rng.randint(2, 4)):
            x, y = rng.randint(centre - 90, centre + 90), rng.randint(200, 420)
            r = rng.randint(12, 30)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=240)
    else:  # RTG, NM: a chest or skeleton outline
        draw.rounded_rectangle((120, 60, 520, 600), radius=120, fill=55)
        for i in range(9):
            y = 120 + i * 48
            draw.arc((140, y, 500, y + 90), 200, 340, fill=200, width=9)
        draw.rectangle((centre - 16, 60, centre + 16, 600), fill=190)
    noise = Image.frombytes("L", (size, size), rng.randbytes(size * size))
    image = Image.blend(shapes.filter(ImageFilter.GaussianBlur(2.5)), noise, 0.12)
    return _jpeg(image, 85)


class _DemoPdf(FPDF):
    """An A4 page with the institution's letterhead and the patient on every page."""

    def __init__(self, spec: DemoDocumentSpec) -> None:
        super().__init__(format="A4", unit="mm")
        self.spec = spec
        self.cursor = _TOP
        self.core_fonts_encoding = "cp1252"  # the core fonts are declared WinAnsiEncoding
        self.set_auto_page_break(auto=False)  # the layout below breaks pages itself
        self.set_margins(_LEFT, 18, _LEFT)

    def header(self) -> None:
        spec = self.spec
        self.image(
            io.BytesIO(_letterhead_jpeg(spec.institution)), x=_LEFT, y=8, w=_WIDTH, h=_WIDTH * 240 / 1800
        )
        self.set_text_color(255, 255, 255)
        self.set_font("Helvetica", "B", 13)
        self.text(_LEFT + 5, 17, _pdf_text(spec.institution))
        if spec.department:
            self.set_font("Helvetica", "", 10)
            self.text(_LEFT + 5, 23, _pdf_text(spec.department))
        self.set_text_color(60, 60, 60)
        self.set_font("Helvetica", "", 8.5)
        patient = f"Pasient: {spec.patient_name}, født {_no_date(spec.patient_birth_date)}"
        self.text(_LEFT, 36, _pdf_text(patient))
        right = _pdf_text(f"{spec.type_name}, {_no_date(spec.service_date)}")
        self.text(_LEFT + _WIDTH - _text_width(right, "", 8.5), 36, right)
        self.set_draw_color(150, 150, 150)
        self.line(_LEFT, 38, _LEFT + _WIDTH, 38)
        self.set_text_color(0, 0, 0)
        self.cursor = _TOP

    def footer(self) -> None:
        self.set_draw_color(150, 150, 150)
        self.line(_LEFT, 280, _LEFT + _WIDTH, 280)
        self.set_font("Helvetica", "I", 8)
        self.set_text_color(110, 110, 110)
        self.text(_LEFT, 285, _pdf_text(SYNTHETIC_NOTICE))
        # cell(), not text(): fpdf2 fills in the page total ({nb}) only in cells.
        self.set_xy(_LEFT + _WIDTH - 40, 282)
        self.cell(40, 4, f"Side {self.page_no()} av {{nb}}", align="R")
        self.set_text_color(0, 0, 0)

    # -- layout primitives --------------------------------------------------

    def need(self, height: float) -> None:
        if self.cursor + height > _BOTTOM:
            self.add_page()

    def space(self, height: float) -> None:
        self.cursor += height

    def line_of(self, text: str, *, size: float = 10, style: str = "", x: float = _LEFT) -> None:
        height = size * 0.5
        self.need(height)
        self.set_font("Helvetica", style, size)
        self.text(x, self.cursor + height * 0.75, _pdf_text(text))
        self.cursor += height

    def paragraph(self, text: str, *, size: float = 10, style: str = "", indent: float = 0.0) -> None:
        shown = _pdf_text(text)
        for line in _wrap(shown, style, size, _WIDTH - indent):
            self.line_of(line, size=size, style=style, x=_LEFT + indent)
        self.cursor += 1.5

    def heading(self, text: str) -> None:
        self.need(16)  # never a heading alone at the foot of a page
        self.space(1.5)
        self.line_of(text, size=11, style="B")
        self.space(0.5)

    def facts(self, pairs: Sequence[tuple[str, str]], label_width: float = 38) -> None:
        for label, value in pairs:
            lines = _wrap(_pdf_text(value), "", 10, _WIDTH - label_width)
            self.need(5 * len(lines))
            self.set_font("Helvetica", "B", 10)
            self.text(_LEFT, self.cursor + 3.75, _pdf_text(label + ":"))
            self.set_font("Helvetica", "", 10)
            for line in lines:
                self.text(_LEFT + label_width, self.cursor + 3.75, line)
                self.cursor += 5
        self.space(2)

    def grid(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[str]],
        widths: Sequence[float],
        *,
        bold_rows: frozenset[int] = frozenset(),
    ) -> None:
        def header_row() -> None:
            self.set_fill_color(228, 232, 238)
            self.rect(_LEFT, self.cursor, _WIDTH, 6, style="F")
            self.set_font("Helvetica", "B", 9.5)
            x = _LEFT
            for text, width in zip(headers, widths, strict=True):
                self.text(x + 1.5, self.cursor + 4.3, _pdf_text(text))
                x += width
            self.cursor += 6

        self.need(6 + 5.5 * min(len(rows), 3))
        header_row()
        self.set_draw_color(200, 200, 200)
        for index, row in enumerate(rows):
            if self.cursor + 5.5 > _BOTTOM:
                self.add_page()
                header_row()
            self.set_font("Helvetica", "B" if index in bold_rows else "", 9.5)
            x = _LEFT
            for text, width in zip(row, widths, strict=True):
                self.text(x + 1.5, self.cursor + 4.0, _pdf_text(text))
                x += width
            self.cursor += 5.5
            self.line(_LEFT, self.cursor, _LEFT + _WIDTH, self.cursor)
        self.space(3)

    def picture(self, jpeg: bytes, width: float, caption: str) -> None:
        self.need(width + 8)
        self.image(io.BytesIO(jpeg), x=_LEFT, y=self.cursor, w=width, h=width)
        self.cursor += width + 1.5
        self.line_of(caption, size=8.5, style="I")
        self.space(2)

    def ecg_strip(self, rng: random.Random, rate: int) -> None:
        """A rhythm strip in vector form: the grid and a synthetic trace (lead II)."""

        height = 32.0
        self.need(height + 8)
        top = self.cursor
        self.set_draw_color(240, 190, 190)
        self.set_line_width(0.1)
        for i in range(int(_WIDTH / 5) + 1):
            self.line(_LEFT + i * 5, top, _LEFT + i * 5, top + height)
        for i in range(int(height / 5) + 1):
            self.line(_LEFT, top + i * 5, _LEFT + _WIDTH, top + i * 5)
        points: list[tuple[float, float]] = []
        baseline = top + height * 0.6
        beat = 25.0 * 60 / rate  # mm per beat at 25 mm/s
        x = _LEFT
        while x < _LEFT + _WIDTH - beat:
            jitter = rng.uniform(-0.6, 0.6)
            for dx, dy in (
                (0, 0),
                (3, -1.2),
                (5, 0),
                (7, 0),
                (7.8, 1.5),
                (8.6, -14),
                (9.4, 3),
                (10.2, 0),
                (14, 0),
                (17, -2.8),
                (20, 0),
            ):
                points.append((x + dx * beat / 25, baseline + dy + (jitter if dy else 0)))
            x += beat + jitter
        self.set_draw_color(20, 20, 20)
        self.set_line_width(0.3)
        self.polyline(points)
        self.set_line_width(0.2)
        self.cursor = top + height + 1.5
        self.line_of("Avledning II, 25 mm/s, 10 mm/mV", size=8.5, style="I")
        self.space(2)

    def signature(self, spec: DemoDocumentSpec, lead: str, when: datetime.datetime) -> None:
        """The signature block: who, their qualification and HPR number, where and when."""

        author = author_by_display(spec.author)
        lines = [spec.author]
        if author is not None:
            lines.append(author.qualification)
        lines.append(f"HPR-nr. {synthetic_hpr(spec.author)}")
        lines.append(", ".join(part for part in (spec.department, spec.institution) if part))
        self.need(12 + 5 * len(lines) + 6)
        self.space(4)
        self.set_draw_color(150, 150, 150)
        self.line(_LEFT, self.cursor, _LEFT + 80, self.cursor)
        self.space(1.5)
        self.line_of(lead, size=9.5, style="I")
        self.line_of(lines[0], size=10.5, style="B")
        for line in lines[1:]:
            self.line_of(line, size=10)
        self.line_of(f"Elektronisk signert {_no_date(when.date())} kl. {when:%H:%M}", size=10)


# Extra, PDF-only material: the XML stays the short KITH-like summary it was.
_COMORBIDITIES: tuple[tuple[str, str], ...] = (
    ("Hypertensjon", "I10"),
    ("Type 2-diabetes", "E11.9"),
    ("Hyperkolesterolemi", "E78.0"),
    ("Hypotyreose", "E03.9"),
    ("Artrose i kne", "M17.9"),
    ("Depresjon, i remisjon", "F32.9"),
    ("Astma", "J45.9"),
    ("Kronisk nyresykdom, stadium 3", "N18.3"),
    ("Osteoporose", "M81.9"),
    ("Gikt", "M10.9"),
)
_REGULAR_MEDICINES: tuple[tuple[str, str], ...] = (
    ("Amlodipin", "5 mg x 1"),
    ("Metformin", "1 g x 2"),
    ("Atorvastatin", "20 mg x 1"),
    ("Levotyroksin", "100 µg x 1"),
    ("Omeprazol", "20 mg x 1"),
    ("Acetylsalisylsyre", "75 mg x 1"),
    ("Escitalopram", "10 mg x 1"),
    ("Allopurinol", "100 mg x 1"),
)
_ALLERGIES = (
    "Ingen kjente legemiddelallergier.",
    "Penicillinallergi (utslett).",
    "Sulfa: kvalme og utslett.",
)
# Epikrise topic title -> (ICD-10 code, diagnosis, [(medicine, dose, change)]) at discharge.
_EPIKRISE_FACTS: dict[str, tuple[str, str, tuple[tuple[str, str, str], ...]]] = {
    "Epikrise etter innleggelse for lungebetennelse": (
        "J18.9",
        "Pneumoni, uspesifisert",
        (
            ("Fenoksymetylpenicillin", "1 g x 4", "Ny, til og med dag 7"),
            ("Paracetamol", "1 g inntil x 4", "Ny, ved behov"),
        ),
    ),
    "Epikrise etter innleggelse for forverring av hjertesvikt": (
        "I50.1",
        "Venstresidig hjertesvikt",
        (
            ("Furosemid", "40 mg x 1", "Økt dose"),
            ("Sakubitril/valsartan", "49/51 mg x 2", "Ny"),
            ("Bisoprolol", "5 mg x 1", "Uendret"),
            ("Spironolakton", "25 mg x 1", "Ny"),
        ),
    ),
    "Epikrise etter innleggelse for nyoppdaget atrieflimmer": (
        "I48.9",
        "Atrieflimmer, uspesifisert",
        (("Apixaban", "5 mg x 2", "Ny"), ("Metoprolol depottablett", "50 mg x 1", "Ny")),
    ),
    "Epikrise etter innleggelse for forverring av kols": (
        "J44.1",
        "Kols med akutt forverring",
        (
            ("Prednisolon", "40 mg x 1", "Ny, til og med dag 5"),
            ("Doksysyklin", "100 mg x 1", "Ny, til og med dag 7"),
            ("Tiotropium/olodaterol", "2 inhalasjoner x 1", "Uendret"),
            ("Salbutamol", "2 inhalasjoner ved behov", "Uendret"),
        ),
    ),
    "Epikrise etter innleggelse for akutt pyelonefritt": (
        "N10",
        "Akutt pyelonefritt",
        (("Pivmecillinam", "400 mg x 3", "Ny, til og med dag 10"),),
    ),
    "Epikrise etter innleggelse for lårhalsbrudd": (
        "S72.0",
        "Lårhalsbrudd",
        (
            ("Dalteparin", "5000 IE x 1 subkutant", "Ny, i fire uker"),
            ("Paracetamol", "1 g x 4", "Ny"),
            ("Oksykodon", "5 mg inntil x 4", "Ny, trappes ned"),
            ("Kalsium/vitamin D", "1 tablett x 2", "Ny"),
        ),
    ),
}
_DAY_NOTES = (
    "Stabil natt. Afebril siste døgn. Spiser og drikker godt og mobiliseres på rommet.",
    "Fortsatt noe slapp, men bedre allmenntilstand. Stabile vitale parametre, NEWS2-skår {news}.",
    "Blodprøver viser fallende CRP. Væskebalansen er i orden. Behandlingen fortsetter som planlagt.",
    "Tilsett av fysioterapeut, som har startet mobilisering i korridor med gåstol.",
    "Samtale med pasient og pårørende om videre plan. Pasienten ønsker å komme hjem så snart det er forsvarlig.",
    "Vurdert av ergoterapeut med tanke på hjelpemidler i hjemmet; badekrakk og toalettforhøyer er bestilt.",
    "Kreatinin og elektrolytter er kontrollert, uten anmerkning. Ingen nye plager.",
    "Subjektivt bedre. Ved stetoskopi mindre funn enn ved innkomst. Oksygentilskudd er seponert.",
    "Sykehusfarmasøyt har gjennomført legemiddelsamstemming sammen med pasienten.",
    "Kontakt med hjemmetjenesten om oppfølging etter utreise; de overtar dosering av legemidler.",
    "Noe urolig natt med dårlig søvn, ellers uendret. Ingen tegn til delirium.",
    "Pasienten er informert om funn og behandling og har hatt anledning til å stille spørsmål.",
)
_SOCIAL = (
    "Bor alene i leilighet med heis. Har hjemmesykepleie to ganger daglig. Datter bor i nærheten.",
    "Gift, bor i enebolig. Pensjonist, tidligere lærer. Selvhjulpen i dagliglivet før innleggelsen.",
    "Samboer, to voksne barn. I full jobb. Røyker ti sigaretter daglig, alkohol i moderate mengder.",
    "Enke, bor i omsorgsbolig. Trygghetsalarm. Bruker rullator utendørs.",
)
_FUNCTION = (
    "Går selvstendig med rullator. Klarer personlig stell med litt hjelp. Spiser selv.",
    "Tilbake til habituelt funksjonsnivå. Selvhjulpen i alle daglige gjøremål.",
    "Noe redusert utholdenhet. Hjemmesykepleien er informert og øker tilsynet de første to ukene.",
)
_STATUS = (
    "Allmenntilstand: lett redusert. Våken og orientert. Cor: regelmessig aksjon, ingen bilyder. "
    "Pulm: {pulm}. Abdomen: bløtt, uømt, normale tarmlyder. Ekstremiteter: {ekstremiteter}. "
    "Blodtrykk {bt}, puls {puls}, temperatur {temp} °C, SpO2 {spo2} %, respirasjonsfrekvens {rf}."
)
_STAY_PANEL = ("hb", "lpk", "crp", "na", "k", "krea")


def _rnd_value(rng: random.Random, key: str, spread: float = 0.3) -> str:
    _name, _unit, low, high, decimals = _LAB_ANALYTES[key]
    span = high - low
    return _decimal(max(rng.uniform(low - spread * span, high + spread * span), 0.0), decimals)


def _reference(key: str) -> str:
    _name, _unit, low, high, decimals = _LAB_ANALYTES[key]
    return (
        f"<{_decimal(high, decimals)}"
        if low == 0
        else f"{_decimal(low, decimals)}–{_decimal(high, decimals)}"
    )


def _document_facts(spec: DemoDocumentSpec) -> list[tuple[str, str]]:
    return [
        ("Pasient", spec.patient_name),
        ("Fødselsdato", _no_date(spec.patient_birth_date)),
        ("Dato", _no_date(spec.service_date)),
        ("Forfatter", spec.author),
    ]


def _sections(pdf: _DemoPdf, sections: Sequence[tuple[str, str]]) -> None:
    for heading, text in sections:
        pdf.heading(heading)
        pdf.paragraph(text)


def _history(pdf: _DemoPdf, rng: random.Random, chosen: Sequence[tuple[str, str]] = ()) -> None:
    chosen = chosen or rng.sample(_COMORBIDITIES, rng.randint(2, 4))
    pdf.heading("Tidligere sykdommer")
    for name, code in chosen:
        pdf.paragraph(f"- {name} ({code}), kjent siden {rng.randint(1995, 2022)}.", indent=2)
    pdf.heading("Allergier og CAVE")
    pdf.paragraph(rng.choice(_ALLERGIES))


def _regular_medicines(rng: random.Random) -> list[tuple[str, str]]:
    return rng.sample(_REGULAR_MEDICINES, rng.randint(2, 5))


def _epikrise(pdf: _DemoPdf, spec: DemoDocumentSpec, content: _Content, rng: random.Random) -> None:
    values = content.values
    by_heading = dict(content.sections)
    code, diagnosis, new_medicines = _EPIKRISE_FACTS.get(
        content.topic.title, ("R69", "Uavklart tilstand", ())
    )
    days = int(values["dager"])
    admitted = spec.service_date - datetime.timedelta(days=days)
    pdf.facts(
        [
            *_document_facts(spec),
            ("Innlagt", _no_date(admitted)),
            ("Utskrevet", _no_date(spec.service_date)),
            ("Mottaker", "Fastlege; kopi til pasienten"),
        ]
    )
    pdf.heading("Diagnoser")
    pdf.paragraph(f"Hoveddiagnose: {diagnosis} ({code})")
    comorbidities = rng.sample(_COMORBIDITIES, rng.randint(2, 4))
    pdf.paragraph("Bidiagnoser: " + "; ".join(f"{name} ({icd})" for name, icd in comorbidities) + ".")
    _history(pdf, rng, comorbidities)
    pdf.heading("Sosiale forhold")
    pdf.paragraph(rng.choice(_SOCIAL))
    pdf.heading("Innleggelsesårsak")
    pdf.paragraph(by_heading.get("Innleggelsesårsak", ""))
    pdf.heading("Funn ved innkomst")
    uses = " ".join(text for _heading, text in content.topic.sections)
    status = {
        **values,
        # A fever only where the topic has one; the admission values otherwise unremarkable.
        "temp": values["temp"] if "{temp}" in uses else _decimal(rng.uniform(36.4, 37.6), 1),
        "puls": values["puls"] if "{puls}" in uses else str(rng.randint(62, 96)),
        "spo2": values["spo2"] if "{spo2}" in uses else str(rng.randint(94, 99)),
        "pulm": rng.choice(("knatrelyder basalt", "spredte pipelyder", "normale respirasjonslyder")),
        "ekstremiteter": rng.choice(("ingen ødemer", "lette ankelødemer", "varme og velperfunderte")),
        "rf": str(rng.randint(14, 28)),
    }
    pdf.paragraph(_STATUS.format_map(status))
    pdf.paragraph(by_heading.get("Funn", ""))
    pdf.heading("Supplerende undersøkelser")
    rows = [
        (
            _LAB_ANALYTES[key][0],
            _rnd_value(rng, key),
            _rnd_value(rng, key, 0.05),
            _LAB_ANALYTES[key][1],
            _reference(key),
        )
        for key in _STAY_PANEL
    ]
    # The values the narrative names, where it names them.
    if "{crp}" in uses:
        rows[2] = (rows[2][0], values["crp"], values["crp_lav"], *rows[2][3:])
    if "{hb}" in uses:
        rows[0] = (rows[0][0], values["hb"], *rows[0][2:])
    pdf.grid(("Analyse", "Innkomst", "Utreise", "Enhet", "Referanse"), rows, (52, 28, 28, 30, 32))
    pdf.heading("Behandling og forløp")
    pdf.paragraph(by_heading.get("Behandling og forløp", ""))
    deck = rng.sample(_DAY_NOTES, len(_DAY_NOTES))  # dealt in turn, so days do not repeat each other
    for day in range(1, days + 1):
        drawn = [deck.pop() if deck else rng.choice(_DAY_NOTES) for _ in range(rng.randint(2, 3))]
        notes = " ".join(note.format(news=rng.randint(0, 4)) for note in drawn)
        pdf.paragraph(f"Dag {day} ({_no_date(admitted + datetime.timedelta(days=day - 1))}): {notes}")
    pdf.heading("Legemidler ved utreise")
    medicines = [
        *((n, d, c) for n, d, c in new_medicines),
        *((n, d, "Uendret") for n, d in _regular_medicines(rng)),
    ]
    pdf.grid(("Legemiddel", "Dosering", "Endring"), medicines, (62, 52, 56))
    pdf.paragraph(
        "Legemiddellisten er samstemt med pasienten og med kjernejournalens reseptformidler ved utreise."
    )
    pdf.heading("Videre plan")
    pdf.paragraph(by_heading.get("Videre oppfølging", ""))
    pdf.heading("Funksjon ved utreise")
    pdf.paragraph(rng.choice(_FUNCTION))
    pdf.heading("Informasjon til pasienten")
    pdf.paragraph(
        "Pasienten er informert om diagnose, behandling og videre plan, muntlig og skriftlig. "
        "Ved forverring skal pasienten kontakte fastlege eller legevakt."
    )
    pdf.signature(spec, "Med vennlig hilsen", _signed(spec, rng))


def _sammenfatning(pdf: _DemoPdf, spec: DemoDocumentSpec, content: _Content, rng: random.Random) -> None:
    pdf.facts(_document_facts(spec))
    _sections(pdf, content.sections[:1])
    _history(pdf, rng)
    pdf.heading("Faste legemidler")
    pdf.grid(("Legemiddel", "Dosering"), _regular_medicines(rng), (85, 85))
    _sections(pdf, content.sections[1:])
    rows = [
        (_LAB_ANALYTES[k][0], _rnd_value(rng, k), _LAB_ANALYTES[k][1], _reference(k)) for k in _STAY_PANEL
    ]
    pdf.heading("Siste prøvesvar")
    pdf.grid(("Analyse", "Verdi", "Enhet", "Referanse"), rows, (66, 38, 30, 36))
    pdf.signature(spec, "Med vennlig hilsen", _signed(spec, rng))


def _provesvar(pdf: _DemoPdf, spec: DemoDocumentSpec, content: _Content, rng: random.Random) -> None:
    taken = spec.service_date - datetime.timedelta(days=rng.randint(0, 2))
    pdf.facts(
        [
            *_document_facts(spec),
            ("Prøvenummer", f"L{spec.service_date:%y}-{spec.seed % 1_000_000:06d}"),
            (
                "Prøve tatt",
                f"{_no_date(taken)} kl. {rng.randint(7, 14):02d}:{rng.choice(('05', '20', '35', '50'))}",
            ),
            ("Rekvirent", rng.choice(("Fastlege", "Medisinsk poliklinikk", "Akuttmottaket"))),
        ]
    )
    if content.rows:
        previous = spec.service_date - datetime.timedelta(days=rng.randint(60, 400))
        abnormal = frozenset(
            i
            for i, (name, value, _u, reference) in enumerate(content.rows)
            if _out_of_range(value, reference)
        )
        rows = [
            (name, value, "*" if i in abnormal else "", unit, reference)
            for i, (name, value, unit, reference) in enumerate(content.rows)
        ]
        pdf.grid(
            ("Analyse", "Verdi", "", "Enhet", "Referanse"), rows, (70, 40, 8, 26, 26), bold_rows=abnormal
        )
        pdf.paragraph(
            f"* utenfor referanseområdet. Forrige prøve for pasienten ved laboratoriet: {_no_date(previous)}.",
            size=8.5,
        )
    _sections(pdf, content.sections)
    pdf.heading("Om analysene")
    pdf.paragraph(
        "Laboratoriet er akkreditert etter NS-EN ISO 15189 (syntetisk akkrediteringsnummer TEST 000). "
        "Referanseområder etter Nordic Reference Interval Project der ikke annet er angitt. "
        "Måleusikkerhet oppgis på forespørsel."
    )
    pdf.signature(spec, "Godkjent av", _signed(spec, rng))


def _out_of_range(value: str, reference: str) -> bool:
    try:
        number = float(value.replace(",", "."))
        if reference.startswith("<"):
            return number >= float(reference[1:].replace(",", "."))
        low, high = (float(part.replace(",", ".")) for part in reference.split("–"))
    except ValueError:
        return False
    return not low <= number <= high


def _modality(title: str) -> str:
    for word, modality in (("CT", "CT"), ("MR", "MR"), ("Ultralyd", "UL"), ("scintigrafi", "NM")):
        if word in title:
            return modality
    return "RTG"


def _radiologi(pdf: _DemoPdf, spec: DemoDocumentSpec, content: _Content, rng: random.Random) -> None:
    modality = _modality(content.topic.title)
    pdf.facts(
        [
            *_document_facts(spec),
            ("Modalitet", modality),
            (
                "Henvisende",
                rng.choice(("Fastlege", "Akuttmottaket", "Medisinsk poliklinikk", "Ortopedisk poliklinikk")),
            ),
            ("Prioritet", rng.choice(("Ordinær", "Haster", "Øyeblikkelig hjelp"))),
            ("Rekvisisjon", f"R{spec.service_date:%y}-{spec.seed % 1_000_000:06d}"),
        ]
    )
    _sections(pdf, content.sections[:2])
    pdf.heading("Teknikk")
    pdf.paragraph(
        {
            "CT": f"Spiral-CT med 0,625 mm snitt, rekonstruert i tre plan. DLP {rng.randint(300, 900)} mGy·cm.",
            "MR": "1,5 T. Sagittale og koronale PD med fettmetning, aksiale T2 og T1.",
            "UL": "Konveks probe 1–6 MHz. Pasienten fastende.",
            "NM": f"Gammakamera, planare opptak og SPECT/CT. Aktivitet {rng.randint(400, 750)} MBq.",
        }.get(modality, "Digital røntgen, to projeksjoner.")
    )
    pdf.heading("Tidligere undersøkelser")
    pdf.paragraph(
        rng.choice(
            (
                "Ingen tidligere undersøkelser av samme region til sammenligning.",
                f"Sammenlignet med undersøkelse {_no_date(spec.service_date - datetime.timedelta(days=rng.randint(200, 900)))}.",
            )
        )
    )
    _sections(pdf, content.sections[2:])
    pdf.picture(
        _key_image_jpeg(modality, spec.seed % 3),
        rng.choice((70.0, 80.0, 90.0)),
        "Nøkkelbilde. Syntetisk illustrasjon, ikke diagnostisk.",
    )
    pdf.signature(spec, "Beskrevet og godkjent av", _signed(spec, rng))


def _fysiologi(
    pdf: _DemoPdf, spec: DemoDocumentSpec, content: _Content, rng: random.Random, kind: str
) -> None:
    pdf.facts(_document_facts(spec))
    if kind == "ekg":
        pdf.ecg_strip(rng, int(content.values["puls_n"]))
    else:
        values = content.values
        pdf.grid(
            ("Måling", "Før bronkodilatasjon", "Etter", "Enhet"),
            (
                ("FEV1", values["fev1"], _decimal(float(values["fev1"].replace(",", ".")) * 1.08, 2), "L"),
                ("FVC", values["fvc"], values["fvc"], "L"),
                ("FEV1/FVC", values["ratio"], values["ratio"], ""),
            ),
            (50, 50, 40, 30),
        )
    _sections(pdf, content.sections)
    pdf.signature(spec, "Tolket og godkjent av", _signed(spec, rng))


def _henvisning(pdf: _DemoPdf, spec: DemoDocumentSpec, content: _Content, rng: random.Random) -> None:
    pdf.facts(
        [
            *_document_facts(spec),
            ("Avsender", ", ".join(p for p in (spec.author, spec.institution) if p)),
            ("Mottaker", spec.recipient or "Aktuell poliklinikk"),
            ("Prioritet", rng.choice(("Ordinær", "Ordinær", "Haster"))),
        ]
    )
    _sections(pdf, content.sections[:2])
    _history(pdf, rng)
    pdf.heading("Faste legemidler")
    pdf.grid(("Legemiddel", "Dosering"), _regular_medicines(rng), (85, 85))
    _sections(pdf, content.sections[2:])
    pdf.heading("Samtykke")
    pdf.paragraph("Pasienten er informert om henvisningen og samtykker til at opplysningene sendes mottaker.")
    pdf.signature(spec, "Med vennlig hilsen", _signed(spec, rng))


def _svar(pdf: _DemoPdf, spec: DemoDocumentSpec, content: _Content, rng: random.Random) -> None:
    pdf.facts([*_document_facts(spec), ("Mottaker", "Henvisende lege; kopi til fastlege")])
    _sections(pdf, content.sections)
    pdf.signature(spec, "Med vennlig hilsen", _signed(spec, rng))


def _signed(spec: DemoDocumentSpec, rng: random.Random) -> datetime.datetime:
    return datetime.datetime.combine(spec.service_date, datetime.time(rng.randint(8, 15), rng.randint(0, 59)))


def render_pdf(spec: DemoDocumentSpec) -> bytes:
    """A deterministic, multi-page-where-it-should-be PDF of about 50–250 KB (see above)."""

    content = _content(spec)
    # A generator of its own for the PDF-only material, so the text shared with the XML
    # (drawn from the spec's seed) stays what it was.
    rng = random.Random(f"pdf:{spec.seed}")
    kind = _kind(spec.category, spec.type_name)
    pdf = _DemoPdf(spec)
    pdf.set_creation_date(
        datetime.datetime.combine(spec.service_date, datetime.time(12, 0), tzinfo=datetime.UTC)
    )
    pdf.set_title(spec.title)
    pdf.set_author(spec.author)
    pdf.set_subject(f"{spec.type_name} ({spec.type_code})")
    pdf.set_creator("pjd_portal demo_content")
    pdf.set_lang("nb-NO")
    pdf.add_page()
    pdf.line_of(spec.type_name, size=16, style="B")
    pdf.space(1)
    pdf.paragraph(spec.title, size=12)
    pdf.space(1)
    if kind == "epikrise":
        _epikrise(pdf, spec, content, rng)
    elif kind == "sammenfatning":
        _sammenfatning(pdf, spec, content, rng)
    elif spec.category == "C00-1":
        _provesvar(pdf, spec, content, rng)
    elif spec.category == "E00-1":
        _radiologi(pdf, spec, content, rng)
    elif spec.category == "D00-1":
        _fysiologi(pdf, spec, content, rng, kind)
    elif kind == "henvisning":
        _henvisning(pdf, spec, content, rng)
    else:
        _svar(pdf, spec, content, rng)
    return bytes(pdf.output())


# ---------------------------------------------------------------------------
# XML.
# ---------------------------------------------------------------------------


def render_xml(spec: DemoDocumentSpec) -> bytes:
    """A simplified, KITH-like UTF-8 XML document; all text is escaped by lxml."""

    content = _content(spec)
    ns = f"{{{XML_NAMESPACE}}}"
    root = etree.Element(f"{ns}Dokument", nsmap={None: XML_NAMESPACE})
    etree.SubElement(
        root, f"{ns}Type", {"kode": spec.type_code, "navn": spec.type_name, "kategori": spec.category}
    )
    for tag, text in (
        ("Tittel", spec.title),
        ("Dato", spec.service_date.isoformat()),
        ("Forfatter", spec.author),
        ("Institusjon", spec.institution),
        ("Avdeling", spec.department),
    ):
        etree.SubElement(root, f"{ns}{tag}").text = text
    patient = etree.SubElement(root, f"{ns}Pasient")
    etree.SubElement(patient, f"{ns}Navn").text = spec.patient_name
    etree.SubElement(patient, f"{ns}Fodselsdato").text = spec.patient_birth_date.isoformat()

    body = etree.SubElement(root, f"{ns}Innhold")
    sections = list(content.sections)
    if spec.seed % 7 == 0:
        # Deliberately hostile free text, so the portal can show it renders inert.
        sections.append(("Merknad fra kildesystemet", f"Fritekst fra kildesystemet: {HOSTILE_TEXT}"))
    for heading, text in sections:
        etree.SubElement(body, f"{ns}Avsnitt", {"overskrift": heading}).text = text

    if spec.category == "C00-1" and content.rows:
        analyses = etree.SubElement(root, f"{ns}Analyser")
        for name, value, unit, reference in content.rows:
            etree.SubElement(
                analyses,
                f"{ns}Analyse",
                {"navn": name, "verdi": value, "enhet": unit, "referanse": reference},
            )
    etree.SubElement(root, f"{ns}Merknad").text = SYNTHETIC_NOTICE

    declaration = b'<?xml version="1.0" encoding="UTF-8"?>\n'
    body_bytes: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=False, pretty_print=True)
    return declaration + body_bytes


# ---------------------------------------------------------------------------
# CDA wrapping (HL7 CDA R2, level 1: a nonXMLBody carrying the document).
# ---------------------------------------------------------------------------

CDA_NAMESPACE = "urn:hl7-org:v3"
_VOLVEN_9602 = "2.16.578.1.12.4.1.1.9602"


def render_cda(spec: DemoDocumentSpec, body: str = "kith") -> bytes:
    """A CDA ClinicalDocument whose nonXMLBody holds the spec's PDF or KITH-like XML, base64.

    `body` is "pdf" (mediaType application/pdf) or "kith" (text/xml). The header repeats
    the document's facts; the body is `render_pdf(spec)` or `render_xml(spec)` unchanged.
    """

    if body not in {"pdf", "kith"}:
        raise ValueError(f"body must be 'pdf' or 'kith', not {body!r}")
    inner, media = (render_pdf(spec), "application/pdf") if body == "pdf" else (render_xml(spec), "text/xml")
    ns = f"{{{CDA_NAMESPACE}}}"
    root = etree.Element(f"{ns}ClinicalDocument", nsmap={None: CDA_NAMESPACE})
    etree.SubElement(root, f"{ns}typeId", {"root": "2.16.840.1.113883.1.3", "extension": "POCD_HD000040"})
    etree.SubElement(root, f"{ns}id", {"root": "2.16.578.1.12.4.1.4.1", "extension": f"demo-{spec.seed}"})
    etree.SubElement(
        root,
        f"{ns}code",
        {"code": spec.type_code, "codeSystem": _VOLVEN_9602, "displayName": spec.type_name},
    )
    etree.SubElement(root, f"{ns}title").text = spec.title
    etree.SubElement(root, f"{ns}effectiveTime", {"value": spec.service_date.strftime("%Y%m%d")})
    etree.SubElement(root, f"{ns}confidentialityCode", {"code": "N", "codeSystem": "2.16.840.1.113883.5.25"})
    etree.SubElement(root, f"{ns}languageCode", {"code": "nb-NO"})
    patient = etree.SubElement(
        etree.SubElement(etree.SubElement(root, f"{ns}recordTarget"), f"{ns}patientRole"), f"{ns}patient"
    )
    etree.SubElement(patient, f"{ns}name").text = spec.patient_name
    etree.SubElement(patient, f"{ns}birthTime", {"value": spec.patient_birth_date.strftime("%Y%m%d")})
    author = etree.SubElement(root, f"{ns}author")
    etree.SubElement(author, f"{ns}time", {"value": spec.service_date.strftime("%Y%m%d")})
    person = etree.SubElement(etree.SubElement(author, f"{ns}assignedAuthor"), f"{ns}assignedPerson")
    etree.SubElement(person, f"{ns}name").text = spec.author
    custodian = etree.SubElement(
        etree.SubElement(etree.SubElement(root, f"{ns}custodian"), f"{ns}assignedCustodian"),
        f"{ns}representedCustodianOrganization",
    )
    etree.SubElement(custodian, f"{ns}name").text = spec.institution
    text = etree.SubElement(
        etree.SubElement(etree.SubElement(root, f"{ns}component"), f"{ns}nonXMLBody"),
        f"{ns}text",
        {"mediaType": media, "representation": "B64"},
    )
    text.text = base64.encodebytes(inner).decode("ascii")
    declaration = b'<?xml version="1.0" encoding="UTF-8"?>\n'
    cda_bytes: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=False, pretty_print=True)
    return declaration + cda_bytes
