"""The OpenAPI 3.1 description of the EPJ's endpoints (the MHD API and the launch), for
standard API testers (schemathesis runs against it in `make test`) and for EPJ vendors.
The FHIR resources are described as far as a tester can check them: their resource
type and the members the portal always sends; FHIR's own profiles say the rest.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]
FHIR_JSON = "application/fhir+json"

_OUTCOME: JSON = {
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"type": "string"},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                },
            },
        },
    },
}
_BUNDLE: JSON = {
    "type": "object",
    "required": ["resourceType", "type", "total", "link"],
    "properties": {
        "resourceType": {"const": "Bundle"},
        "type": {"const": "searchset"},
        "total": {"type": "integer", "minimum": 0},
        "link": {"type": "array", "items": {"type": "object", "required": ["relation", "url"]}},
        "entry": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["resource", "search"],
                "properties": {
                    "resource": {"type": "object", "required": ["resourceType"]},
                    "search": {
                        "type": "object",
                        "properties": {"mode": {"enum": ["match", "include", "outcome"]}},
                    },
                },
            },
        },
    },
}
_DATE_PATTERN = r"^(eq|ge|le|gt|lt)?\d{4}(-\d{2}(-\d{2})?)?$"
_FHIR_ID_PATTERN = r"^[A-Za-z0-9\-.]{1,64}$"
_NONCE_HEADER: JSON = {
    "DPoP-Nonce": {"description": "A fresh nonce for the next DPoP proof.", "schema": {"type": "string"}}
}


def _outcome(description: str) -> JSON:
    return {
        "description": description,
        "headers": _NONCE_HEADER,
        "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}},
    }


_ERRORS: JSON = {
    "400": _outcome("A parameter the API does not take, or a bad value (as HAPI FHIR answers)."),
    "401": _outcome(
        "No valid DPoP-bound token or DPoP proof; use_dpop_nonce: repeat with the DPoP-Nonce given."
    ),
    "403": _outcome("The attest cannot be used, or the portal's policy refuses (the policy's own message)."),
    "404": _outcome(
        "No such patient (or not the attest's), or no such document (not allowed looks the same)."
    ),
    "405": _outcome("Another method."),
    "429": {
        **_outcome(
            "The clinician has looked up more patients in a short time than the portal allows "
            "(the same limit as the portal's own lookup form): nothing was looked up."
        ),
        "headers": {
            **_NONCE_HEADER,
            "Retry-After": {
                "description": "Seconds until a lookup may be made.",
                "schema": {"type": "integer"},
            },
        },
    },
    "503": _outcome("The access log or the identity provider is unavailable: nothing was shown."),
}

_SEARCH_FIELDS: JSON = {
    "status": {"type": "string", "enum": ["current", "superseded", "entered-in-error"]},
    "category": {
        "type": "string",
        "pattern": r"^([A-Za-z0-9:.\-]*\|)?[A-Z]\d{2}-\d(,([A-Za-z0-9:.\-]*\|)?[A-Z]\d{2}-\d)*$",
    },
    "date": {"type": "array", "maxItems": 2, "items": {"type": "string", "pattern": _DATE_PATTERN}},
    "_id": {"type": "string", "pattern": _FHIR_ID_PATTERN},
    "_count": {"type": "integer", "minimum": 1, "maximum": 100},
    "_sort": {"type": "string", "enum": ["date", "-date"]},
    "_include": {"type": "string", "enum": ["DocumentReference:subject"]},
}


def _query_parameters() -> list[JSON]:
    params = []
    for name, schema in _SEARCH_FIELDS.items():
        param: JSON = {"name": name, "in": "query", "required": False, "schema": schema}
        if schema.get("type") == "array":
            param.update(style="form", explode=True)
        params.append(param)
    params.append(
        {
            "name": "_cursor",
            "in": "query",
            "required": False,
            "description": "The next page, from link next (opaque, signed); given alone.",
            "schema": {"type": "string", "maxLength": 2000},
        }
    )
    return params


def description(server: str) -> JSON:
    security: list[JSON] = [{"dpop": []}]
    search_ok = {
        "description": "A searchset Bundle: DocumentReferences (IHE MHD Minimal), the included Patient, and an "
        "OperationOutcome entry (search.mode outcome) of what was not shown and of sources that did not answer.",
        "headers": _NONCE_HEADER,
        "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Bundle"}}},
    }
    body_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **_SEARCH_FIELDS,
            "patient.identifier": {
                "type": "string",
                "description": "urn:oid:2.16.578.1.12.4.1.4.1|<national id> (or the D-nummer system 4.2, "
                "H-nummer 4.3): must be the attest's patient.",
                "pattern": r"^(urn:oid:2\.16\.578\.1\.12\.4\.1\.4\.[123]\|)?\d{11}$",
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "PJD Portal: the EPJ's API (IHE MHD ITI-67/ITI-68, FHIR R4, and the launch)",
            "version": "1.0.0",
            "description": "See docs/epj.md. The patient is always the one of the token's attest: the national id "
            "never goes in a URL. Every answer carries a fresh DPoP-Nonce; every error is an OperationOutcome.",
        },
        "servers": [{"url": server}],
        "paths": {
            "/api/fhir/metadata": {
                "get": {
                    "operationId": "metadata",
                    "summary": "The CapabilityStatement (no token)",
                    "responses": {
                        "200": {
                            "description": "CapabilityStatement",
                            "content": {
                                FHIR_JSON: {
                                    "schema": {
                                        "type": "object",
                                        "required": ["resourceType"],
                                        "properties": {"resourceType": {"const": "CapabilityStatement"}},
                                    }
                                }
                            },
                        },
                        "405": _ERRORS["405"],
                    },
                }
            },
            "/api/fhir/DocumentReference/_search": {
                "post": {
                    "operationId": "findDocumentReferencesPost",
                    "summary": "ITI-67 Find Document References (the patient may be named in the body)",
                    "security": security,
                    "requestBody": {
                        "required": False,
                        "content": {"application/x-www-form-urlencoded": {"schema": body_schema}},
                    },
                    "responses": {
                        "200": search_ok,
                        "413": _outcome("The body is larger than the API takes (too-long)."),
                        **_ERRORS,
                    },
                }
            },
            "/api/fhir/DocumentReference": {
                "get": {
                    "operationId": "findDocumentReferencesGet",
                    "summary": "ITI-67 by GET: no patient parameter (the attest's patient); next links come here",
                    "security": security,
                    "parameters": _query_parameters(),
                    "responses": {"200": search_ok, **_ERRORS},
                }
            },
            "/api/fhir/Binary/{id}": {
                "get": {
                    "operationId": "retrieveDocument",
                    "summary": "ITI-68 Retrieve Document: the attachment URL of a DocumentReference",
                    "security": security,
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": _FHIR_ID_PATTERN},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The document's bytes, streamed in its own type; a Binary resource "
                            "(base64 data) for Accept: application/fhir+json.",
                            "headers": _NONCE_HEADER,
                            "content": {
                                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                                "application/xml": {"schema": {"type": "string", "format": "binary"}},
                                "text/xml": {"schema": {"type": "string", "format": "binary"}},
                                "application/hl7-v3+xml": {"schema": {"type": "string", "format": "binary"}},
                                FHIR_JSON: {
                                    "schema": {
                                        "type": "object",
                                        "required": ["resourceType", "contentType", "data"],
                                        "properties": {"resourceType": {"const": "Binary"}},
                                    }
                                },
                            },
                        },
                        "422": _outcome(
                            "Too large to be sent as a Binary resource: ask for the document's own type."
                        ),
                        **_ERRORS,
                        "405": _outcome("Another method (HEAD too: a retrieve is a GET)."),
                        "503": _outcome(
                            "The access log, the identity provider or the document's source is unavailable "
                            "(transient): nothing was shown. Try again later."
                        ),
                    },
                }
            },
            "/api/launch": {
                "post": {
                    "operationId": "launch",
                    "summary": "The launch: a one-time code for the browser to bring to start_url",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {
                                    "type": "object",
                                    "required": ["ehr_code_challenge", "ehr_code_challenge_method"],
                                    "properties": {
                                        "ehr_code_challenge": {
                                            "type": "string",
                                            "pattern": r"^[A-Za-z0-9_-]{43}$",
                                        },
                                        "ehr_code_challenge_method": {"const": "S256"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": {
                            "description": "The code",
                            "headers": _NONCE_HEADER,
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["code", "expires_in", "start_url"],
                                        "properties": {
                                            "code": {"type": "string"},
                                            "expires_in": {"type": "integer"},
                                            "start_url": {"type": "string"},
                                        },
                                    }
                                }
                            },
                        },
                        **_ERRORS,
                    },
                }
            },
        },
        "components": {
            "schemas": {"OperationOutcome": _OUTCOME, "Bundle": _BUNDLE},
            "securitySchemes": {
                "dpop": {
                    "type": "http",
                    "scheme": "DPoP",
                    "bearerFormat": "JWT",
                    "description": "A HelseID access token bound to the caller's DPoP key (cnf.jkt), carrying the trust "
                    "framework attest in authorization_details, as `Authorization: DPoP <token>`; and a header `DPoP` "
                    "with a proof (RFC 9449: htm, htu, iat, jti, ath and the nonce of the latest DPoP-Nonce header).",
                }
            },
        },
    }
