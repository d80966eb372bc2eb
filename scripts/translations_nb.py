"""Bokmål translations of the portal's UI strings, applied to locale/nb/.../django.po.

Run `make messages` after changing UI strings; this fills in what it knows and lists
what it does not. Needs `polib` (a dev tool: pip install polib).
"""

from __future__ import annotations

import sys

NB = {
    "Patient's access log read": "Pasientens tilgangslogg lest",
    "An elevated basis is only for patients who have restricted document sharing.": "Forhøyet grunnlag gjelder bare pasienter som har sperret deling av dokumenter.",
    "Elevated basis": "Forhøyet grunnlag",
    "Why is it necessary to read documents the patient has restricted? Write at least one sentence.": "Hvorfor er det nødvendig å lese dokumenter pasienten har sperret? Skriv minst én setning.",
    "I confirm that reading these documents is necessary for the care I give now. I know the access is flagged for review and the patient is told.": "Jeg bekrefter at det er nødvendig å lese disse dokumentene for helsehjelpen jeg gir nå. Jeg vet at tilgangen merkes for kontroll og at pasienten får beskjed.",
    "The source lets you see that this document exists, not open it.": "Kilden lar deg se at dokumentet finnes, men ikke åpne det.",
    "Not available to you": "Ikke tilgjengelig for deg",
    "Request elevated access": "Be om forhøyet tilgang",
    "Elevated access": "Forhøyet tilgang",
    "The patient has restricted the sharing of their documents. You may read them only when it is necessary for the care you give now, with an elevated basis and a reason. The access is flagged for review, and the patient is told.": "Pasienten har sperret deling av dokumentene sine. Du kan bare lese dem når det er nødvendig for helsehjelpen du gir nå, med forhøyet grunnlag og en begrunnelse. Tilgangen merkes for kontroll, og pasienten får beskjed.",
    "Confirm and continue": "Bekreft og fortsett",
    "Cancel": "Avbryt",
    "Choose one of the organisations.": "Velg en av virksomhetene.",
    "Organisation chosen": "Virksomhet valgt",
    "This page cannot be opened this way": "Denne siden kan ikke åpnes slik",
    "The address is used by a form and cannot be opened or reloaded on its own. Nothing was changed. Start again from the front page.": "Adressen brukes av et skjema og kan ikke åpnes eller lastes på nytt alene. Ingenting er endret. Begynn på nytt fra forsiden.",
    "Choose organisation": "Velg virksomhet",
    "Which organisation do you act for?": "Hvilken virksomhet handler du på vegne av?",
    "You have a role in more than one organisation. Your choice is shown at the top of every page and written in the access log.": "Du har en rolle i mer enn én virksomhet. Valget ditt vises øverst på hver side og skrives i tilgangsloggen.",
    "Organisation": "Virksomhet",
    "Change organisation": "Bytt virksomhet",
    "You do not have a clinician role in this organisation.": "Du har ikke en klinisk rolle i denne virksomheten.",
    "You are not registered as health personnel (HPR).": "Du er ikke registrert som helsepersonell (HPR).",
    "You have no health personnel authorization in HPR.": "Du har ingen autorisasjon som helsepersonell i HPR.",
    "Choose a basis for access.": "Velg grunnlag for tilgang.",
    "Write a reason of at least one sentence (at least %(n)d characters).": "Skriv en begrunnelse på minst én setning (minst %(n)d tegn).",
    "The exception from consent applies only to your own list patients. Choose consent or emergency.": "Unntak fra samtykke gjelder bare dine egne listepasienter. Velg samtykke eller akutt.",
    "The exception from consent does not apply to you here. Choose consent or emergency.": "Unntak fra samtykke gjelder ikke for deg her. Velg samtykke eller akutt.",
    "State the basis for access first.": "Oppgi grunnlag for tilgang først.",
    "The patient has blocked your access. No documents can be shown, also not in an emergency.": "Pasienten har blokkert din tilgang. Ingen dokumenter kan vises, heller ikke i en akuttsituasjon.",
    "The patient has reserved against document sharing. No documents are shown.": "Pasienten har reservert seg mot deling av dokumenter. Ingen dokumenter vises.",
    "The patient has restricted document sharing. Documents are shown only with an elevated basis (forhøyet samtykke or forhøyet akutt).": "Pasienten har sperret deling av dokumenter. Dokumenter vises bare med forhøyet grunnlag (forhøyet samtykke eller forhøyet akutt).",
    "GP office": "Fastlegekontor",
    "Emergency primary care (legevakt)": "Legevakt",
    "Nursing home": "Sykehjem",
    "Hospital trust": "Helseforetak",
    "Contract specialist": "Avtalespesialist",
    "Administration": "Forvaltning",
    "Clinician": "Kliniker",
    "Auditor": "Loggkontrollør",
    "Access administrator": "Tilgangsstyrer",
    "Privacy officer": "Personvernansvarlig",
    "Login": "Innlogging",
    "Login refused": "Innlogging avvist",
    "Logout": "Utlogging",
    "Patient lookup": "Pasientoppslag",
    "Basis for access stated": "Grunnlag for tilgang oppgitt",
    "Emergency access": "Akuttilgang",
    "Document list": "Dokumentliste",
    "Document opened": "Dokument åpnet",
    "Access denied": "Tilgang avvist",
    "Granted": "Innvilget",
    "Denied": "Avvist",
    "Not found": "Ikke funnet",
    "Invalid input": "Ugyldig inndata",
    "Discharge summaries and summaries": "Epikriser og sammenfatninger",
    "Test results, tissue and fluids": "Prøvesvar, vev og væsker",
    "Organ function": "Organfunksjon",
    "Diagnostic imaging": "Bildediagnostikk",
    "Correspondence and referrals": "Korrespondanse og henvisninger",
    "Normal": "Normal",
    "Restricted": "Begrenset",
    "Very restricted": "Svært begrenset",
    "Blocked for health personnel (NORS)": "Sperret for helsepersonell (NORS)",
    "Citizen denied access": "Innbygger nektet innsyn",
    "Citizen access delayed": "Innbyggers innsyn utsatt",
    "Date": "Dato",
    "Category": "Kategori",
    "Type": "Type",
    "Title": "Tittel",
    "Institution": "Institusjon",
    "Author": "Forfatter",
    "The portal cannot reach its database right now. Nothing was shown or changed. Please try again in a minute.": "Portalen får ikke kontakt med databasen akkurat nå. Ingenting ble vist eller endret. Prøv igjen om et minutt.",
    "The access could not be logged, so the document is not shown. Nothing was opened. Please try again in a minute.": "Tilgangen kunne ikke logges, derfor vises ikke dokumentet. Ingenting ble åpnet. Prøv igjen om et minutt.",
    "The document cannot be fetched from where it is kept right now. Please try again in a minute.": "Dokumentet kan ikke hentes fra der det er lagret akkurat nå. Prøv igjen om et minutt.",
    "Temporarily unavailable": "Midlertidig utilgjengelig",
    "The form has expired": "Skjemaet er utløpt",
    "The form could not be accepted because its security token was missing or expired. Nothing was changed. Go back, reload the page and try again.": "Skjemaet kunne ikke tas imot fordi sikkerhetsnøkkelen manglet eller var utløpt. Ingenting ble endret. Gå tilbake, last siden på nytt og prøv igjen.",
    "The page or document was not found, or you do not have access to it.": "Siden eller dokumentet finnes ikke, eller du har ikke tilgang til det.",
    "No access": "Ingen tilgang",
    "You do not have access to this part of the portal.": "Du har ikke tilgang til denne delen av portalen.",
    "Invalid request": "Ugyldig forespørsel",
    "The request could not be understood. Nothing was changed.": "Forespørselen kunne ikke forstås. Ingenting ble endret.",
    "Something went wrong": "Noe gikk galt",
    "An unexpected error occurred. Nothing was shown. The error has been logged.": "Det oppstod en uventet feil. Ingenting ble vist. Feilen er logget.",
    "National identity number": "Fødselsnummer",
    "11 digits: fødselsnummer, D-number or H-number.": "11 siffer: fødselsnummer, D-nummer eller H-nummer.",
    "Basis for access": "Grunnlag for tilgang",
    "Reason": "Begrunnelse",
    "Required for emergency and elevated access: write at least one sentence.": "Påkrevd ved akutt og forhøyet tilgang: skriv minst én setning.",
    "None": "Ingen",
    "Confidential address": "Fortrolig adresse",
    "Strictly confidential address": "Strengt fortrolig adresse",
    "Female": "Kvinne",
    "Male": "Mann",
    "Unknown": "Ukjent",
    "Reservation: no documents for anyone": "Reservasjon: ingen dokumenter for noen",
    "Restriction: documents only with an elevated basis": "Sperring: dokumenter bare med forhøyet grunnlag",
    "Blocked clinician": "Blokkert helsepersonell",
    "A national identity number has 11 digits. Check the number and try again.": "Et fødselsnummer har 11 siffer. Kontroller nummeret og prøv igjen.",
    "The number is not a valid national identity number (check digits do not match).": "Nummeret er ikke et gyldig fødselsnummer (kontrollsiffer stemmer ikke).",
    "The number does not contain a valid date of birth.": "Nummeret inneholder ikke en gyldig fødselsdato.",
    "Synthetic test numbers are not accepted here.": "Syntetiske testnumre godtas ikke her.",
    "No patient with this national identity number was found.": "Fant ingen pasient med dette fødselsnummeret.",
    "No patient found.": "Fant ingen pasient.",
    "Norwegian Bokmål": "Norsk bokmål",
    "English": "Engelsk",
    "You are logged out": "Du er logget ut",
    "Your session has ended. Close the browser if you are on a shared computer.": "Økten din er avsluttet. Lukk nettleseren hvis du bruker en delt datamaskin.",
    "Log in again": "Logg inn igjen",
    "Session expired": "Økt utløpt",
    "Your session has ended because you were not active for %(minutes)s minutes, or because you had been logged in for more than %(hours)s hours. This protects patient information on shared computers.": "Økten din er avsluttet fordi du ikke har vært aktiv på %(minutes)s minutter, eller fordi du har vært innlogget i mer enn %(hours)s timer. Dette beskytter pasientopplysninger på delte datamaskiner.",
    "Log in again to continue.": "Logg inn på nytt for å fortsette.",
    "You will soon be logged out": "Du blir snart logget ut",
    "You have not been active for a while. To protect patient information you will be logged out unless you continue.": "Du har ikke vært aktiv på en stund. For å beskytte pasientopplysninger blir du logget ut hvis du ikke fortsetter.",
    "You have been logged in for a long time, and the session ends soon. Log in again afterwards to continue.": "Du har vært innlogget lenge, og økten avsluttes snart. Logg inn på nytt etterpå for å fortsette.",
    "Time left:": "Tid igjen:",
    "Close": "Lukk",
    "Patient's record documents": "Pasientens journaldokumenter",
    "For health personnel with a need to know. Log in with HelseID to look up a patient and read documents shared by other organisations.": "For helsepersonell med tjenstlig behov. Logg inn med HelseID for å slå opp en pasient og lese dokumenter som andre virksomheter deler.",
    "Log in with HelseID": "Logg inn med HelseID",
    "PJD portal": "PJD-portalen",
    "You could not be logged in": "Du kunne ikke logges inn",
    "The portal is for health personnel. Your identity has no number in the health personnel register (HPR).": "Portalen er for helsepersonell. Identiteten din har ikke nummer i helsepersonellregisteret (HPR).",
    "The portal requires login at the high security level (level 4, e.g. BankID). Log in again with such a method.": "Portalen krever innlogging på høyt sikkerhetsnivå (nivå 4, f.eks. BankID). Logg inn igjen med en slik metode.",
    "The login was cancelled.": "Innloggingen ble avbrutt.",
    "HelseID cannot be reached right now. Please try again in a minute.": "HelseID kan ikke nås akkurat nå. Prøv igjen om et minutt.",
    "HelseID reported an error during login.": "HelseID meldte en feil under innloggingen.",
    "The login answer from HelseID could not be verified. Nothing was stored. Please try again.": "Svaret fra HelseID kunne ikke verifiseres. Ingenting ble lagret. Prøv igjen.",
    "Try again": "Prøv igjen",
    "Welcome": "Velkommen",
    "Your roles here:": "Dine roller her:",
    "The administration area is not available yet.": "Forvaltningsområdet er ikke tilgjengelig ennå.",
    "Skip to main content": "Gå til hovedinnhold",
    "Log out": "Logg ut",
    "Every access is logged. Reading without a care purpose is forbidden (helsepersonelloven § 21a).": "All tilgang logges. Det er forbudt å lese uten tjenstlig behov (helsepersonelloven § 21a).",
    "All categories": "Alle kategorier",
    "Per page": "Per side",
    "Show": "Vis",
    "Open": "Åpne",
    "Pages": "Sider",
    "Previous": "Forrige",
    "Page %(number)s of %(total)s": "Side %(number)s av %(total)s",
    "Next": "Neste",
    "No documents to show.": "Ingen dokumenter å vise.",
    "Documents": "Dokumenter",
    "Patient": "Pasient",
    "%(age)s years": "%(age)s år",
    "born": "født",
    "Protected address": "Skjermet adresse",
    "Basis for access:": "Grunnlag for tilgang:",
    "valid until": "gyldig til",
    "New patient": "Ny pasient",
    "Analysis": "Analyse",
    "Value": "Verdi",
    "Unit": "Enhet",
    "Reference": "Referanse",
    "Show the XML source": "Vis XML-kilden",
    "The document could not be read (malformed XML).": "Dokumentet kunne ikke leses (ugyldig XML).",
    "Back to the front page": "Tilbake til forsiden",
    "Continue": "Fortsett",
    "Look up a patient": "Slå opp pasient",
    "Look up": "Slå opp",
    "State why you need to read this patient's documents. The basis is logged and sent to the sources; the patient can see it.": "Oppgi hvorfor du trenger å lese pasientens dokumenter. Grunnlaget logges og sendes til kildene; pasienten kan se det.",
    "Look up another patient": "Slå opp en annen pasient",
    # The patient's access log (innsyn i logg), for the privacy officer
    "The patient's national identity number": "Pasientens fødselsnummer",
    "Enter the patient's national identity number.": "Skriv inn pasientens fødselsnummer.",
    "The page could not be shown. Search again from the first page.": "Siden kunne ikke vises. Søk på nytt fra første side.",
    "Access log for a patient (innsyn i logg)": "Innsyn i logg for en pasient",
    "Access log for a patient": "Innsyn i logg",
    "For a patient who asks who has accessed their records (innsyn i logg). The search is logged.": "For en pasient som ber om å få vite hvem som har hatt tilgang til opplysningene om dem (innsyn i logg). Søket logges.",
    "Show the access log": "Vis loggen",
    "No patient with this national identity number is registered in the portal, so there are no accesses to show.": "Ingen pasient med dette fødselsnummeret er registrert i portalen, så det er ingen tilganger å vise.",
    "Accesses to the records of %(name)s": "Tilganger til opplysningene om %(name)s",
    "Printed": "Skrevet ut",
    "Printed by": "Skrevet ut av",
    "Every access to the patient's documents through the PJD portal, and every refusal, newest first. Times are Norwegian time.": "Alle tilganger til pasientens dokumenter gjennom PJD-portalen, og alle avviste forsøk, nyeste først. Tidspunktene er norsk tid.",
    "Print": "Skriv ut",
    "When": "Når",
    "Who": "Hvem",
    "What": "Hva",
    "Document": "Dokument",
    "Outcome": "Utfall",
    "HPR no.": "HPR-nr.",
    "Org. no.": "Org.nr.",
    "A document the patient has no access to": "Et dokument pasienten ikke har innsyn i",
    "No one has accessed this patient's documents through the portal.": "Ingen har hatt tilgang til pasientens dokumenter gjennom portalen.",
    "There are no older accesses.": "Det er ingen eldre tilganger.",
    "Next page (older accesses)": "Neste side (eldre tilganger)",
    "Older accesses follow on the next page.": "Eldre tilganger følger på neste side.",
}
NB_PLURAL = {
    "%(counter)s document is blocked (sperret) and not shown.": (
        "%(counter)s dokument er sperret og vises ikke.",
        "%(counter)s dokumenter er sperret og vises ikke.",
    ),
    "%(counter)s document": ("%(counter)s dokument", "%(counter)s dokumenter"),
}


def main(path: str) -> int:
    import polib

    po = polib.pofile(path)
    missing = []
    for entry in po:
        if entry.msgid_plural:
            if entry.msgid in NB_PLURAL:
                one, many = NB_PLURAL[entry.msgid]
                entry.msgstr_plural = {0: one, 1: many}
            else:
                missing.append(entry.msgid)
        elif entry.msgid in NB:
            entry.msgstr = NB[entry.msgid]
        else:
            missing.append(entry.msgid)
        if "fuzzy" in entry.flags:
            entry.flags.remove("fuzzy")
            # msgmerge's guess is replaced above: drop its "#| msgid" note too.
            entry.previous_msgid = entry.previous_msgid_plural = entry.previous_msgctxt = None
    po.metadata["Language"] = "nb"
    po.metadata["Plural-Forms"] = "nplurals=2; plural=(n != 1);"
    po.metadata["Content-Type"] = "text/plain; charset=UTF-8"
    po.save(path)
    for msgid in missing:
        print(f"untranslated: {msgid!r}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "locale/nb/LC_MESSAGES/django.po"))
