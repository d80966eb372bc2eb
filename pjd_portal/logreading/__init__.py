"""Reading the access log: the patient's log (innsyn and the citizen API), its FHIR BALP
form, the log review's search and risk signals. Above the domain, below the pages."""
