"""The citizen portal's API: a patient's access log as FHIR AuditEvents."""
