"""Render the habilitation matrix as a Markdown table (docs/access-rules.md embeds it)."""

from __future__ import annotations

from dmp.access.policy import Matrix
from dmp.domain.codes import TYPE_LABELS


def matrix_table(matrix: Matrix) -> str:
    lines = [
        "| profession (TRE_G15) | specialty / section | readable document types |",
        "|---|---|---|",
    ]
    for (profession, specialty, section), types in matrix.rules.items():
        label = matrix.labels.get((profession, specialty, section), "")
        qualifier = specialty or (f"section {section}" if section else "")
        if types is None:
            readable = "all types"
        else:
            readable = ", ".join(f"{TYPE_LABELS[t]} ({t})" for t in sorted(types))
        lines.append(f"| {label} ({profession}) | {qualifier} | {readable} |")
    return "\n".join(lines)
