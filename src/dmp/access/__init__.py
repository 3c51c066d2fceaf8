"""The access gate: every read or change of patient data goes through here."""
