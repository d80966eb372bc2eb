// A second, independent FHIR R4 validator for the tests (tests/fhir_validation.py):
// FHIR.js (the npm package `fhir`), which checks a resource against the R4 (4.0.0)
// StructureDefinitions and value sets it ships: unknown elements, cardinality, datatypes
// and required codes. Offline: it reads nothing but its own package.
//
// Reads a JSON array of resources on stdin; writes one JSON array of answers, one per
// resource: {"valid": bool, "messages": [{"location", "severity", "message"}, ...]}.
"use strict";

const { Fhir } = require("fhir");

const fhir = new Fhir();
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  input += chunk;
});
process.stdin.on("end", () => {
  const resources = JSON.parse(input);
  const answers = resources.map((resource) => fhir.validate(resource, { errorOnUnexpected: true }));
  process.stdout.write(JSON.stringify(answers));
});
