"""Patient notices: the patient is told of every AKUTT and FORHØYET access.

The notice row (`PatientNotice`, the outbox) is written in the transaction that writes the
attest and its event (access/services.py: state_basis); a django-tasks task delivers it to
the citizen portal (`delivery.py`), and the row alone says whether it was sent. See
docs/operations.md#patient-notices.
"""
