"""Encryption at rest: key ring of key-encryption keys, per-patient data keys, AES-256-GCM."""
