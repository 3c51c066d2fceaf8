"""Storage of patients, records, documents, consents and the audit trail.

Only :mod:`dmp.access` imports this package (import-linter contract): every read of patient data
goes through the access gate. Patient-scoped functions take an :class:`AuthorizedPatient`, which
only the gate creates.
"""
