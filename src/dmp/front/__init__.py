"""The front door every adapter shares: the request's grant and its gate (``deps``), the
narrow objects public pages get, a document's content as an answer (``content``), and the FHIR
form of the gate's views (``fhir_mapping``: the FHIR API's resources, the portal's export).
Adapters (``api``, ``fhir``, ``web``) import this package, never one another."""
