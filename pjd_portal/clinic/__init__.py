"""The clinician's pages: look up a patient, state the basis, list and open documents."""
