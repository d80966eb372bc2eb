"""The EPJ's doors into the portal: the launch (`POST /api/launch`) and the MHD API under
`/api/fhir/` (docs/epj.md). Token-authenticated, no session, no CSRF."""
