"""Pure domain values shared by every layer: identifiers, code systems, actors' vocabulary."""
