"""FHIR R4 document-sharing API: IHE MHD 4.2.3 and the French PDSm 3.1.1 profile.

Responses are built as plain dicts (serialising through the FHIR models costs milliseconds per
resource); requests are validated with the ``fhir.resources`` R4B models plus our own checks.
"""
