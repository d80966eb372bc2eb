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
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from lxml import etree

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
    return _Content(sections=sections, rows=rows)


# ---------------------------------------------------------------------------
# PDF.
# ---------------------------------------------------------------------------


def _pdf_text(text: str) -> str:
    """Text the core fonts (Windows-1252) can show; anything else becomes '?'."""

    for old, new in _PDF_REPLACEMENTS.items():
        text = text.replace(old, new)
    return text.encode("cp1252", errors="replace").decode("cp1252")


class _DemoPdf(FPDF):
    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("Helvetica", "I", 8)
        self.set_text_color(110, 110, 110)
        self.cell(0, 5, _pdf_text(SYNTHETIC_NOTICE), align="L")
        self.cell(0, 5, f"Side {self.page_no()} av {{nb}}", align="R")


def render_pdf(spec: DemoDocumentSpec) -> bytes:
    """A small, deterministic PDF (core font Helvetica, no embedded files)."""

    content = _content(spec)
    pdf = _DemoPdf(format="A4", unit="mm")
    pdf.core_fonts_encoding = "cp1252"  # the core fonts are declared WinAnsiEncoding
    pdf.set_margins(20, 18, 20)
    pdf.set_auto_page_break(auto=True, margin=22)
    pdf.set_creation_date(
        datetime.datetime.combine(spec.service_date, datetime.time(12, 0), tzinfo=datetime.UTC)
    )
    pdf.set_title(spec.title)
    pdf.set_author(spec.author)
    pdf.set_subject(f"{spec.type_name} ({spec.type_code})")
    pdf.set_creator("pjd_portal demo_content")
    pdf.set_lang("nb-NO")
    pdf.add_page()
    width = pdf.epw

    # Header: institution and department.
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(width, 6, _pdf_text(spec.institution), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", "", 10)
    pdf.cell(width, 5, _pdf_text(spec.department), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_draw_color(120, 120, 120)
    pdf.line(pdf.l_margin, pdf.get_y() + 2, pdf.l_margin + width, pdf.get_y() + 2)
    pdf.ln(6)

    # Type and title.
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(width, 8, _pdf_text(spec.type_name), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", "", 12)
    pdf.multi_cell(width, 6, _pdf_text(spec.title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)

    # Patient and document facts.
    facts = (
        ("Pasient", spec.patient_name),
        ("Fødselsdato", _no_date(spec.patient_birth_date)),
        ("Dato", _no_date(spec.service_date)),
        ("Forfatter", spec.author),
    )
    for label, value in facts:
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(32, 5, _pdf_text(label + ":"))
        pdf.set_font("Helvetica", "", 10)
        pdf.cell(width - 32, 5, _pdf_text(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)

    if content.rows:
        _pdf_table(pdf, content.rows)
        pdf.ln(4)

    for heading, text in content.sections:
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(width, 6, _pdf_text(heading), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("Helvetica", "", 10)
        pdf.multi_cell(width, 5, _pdf_text(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(3)

    return bytes(pdf.output())


def _pdf_table(pdf: FPDF, rows: Sequence[Row]) -> None:
    widths = (66.0, 38.0, 30.0, pdf.epw - 134.0)
    pdf.set_font("Helvetica", "B", 10)
    pdf.set_fill_color(230, 230, 230)
    for header, col_width in zip(("Analyse", "Verdi", "Enhet", "Referanse"), widths, strict=True):
        pdf.cell(col_width, 6, header, border="B", fill=True)
    pdf.ln(6)
    pdf.set_font("Helvetica", "", 10)
    for row in rows:
        for cell_text, col_width in zip(row, widths, strict=True):
            pdf.cell(col_width, 5.5, _pdf_text(cell_text), border="B")
        pdf.ln(5.5)


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
