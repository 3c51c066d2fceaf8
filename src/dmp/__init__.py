"""dmp: an open-source shared medical record (Dossier Médical Partagé) platform."""

__version__ = "0.1.0"
