"""Adoption statistics: presentation (table, CSV, JSON, SVG chart, HTML page)."""
