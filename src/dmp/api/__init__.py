"""The JSON API (the FHIR API lives in dmp.fhir)."""
