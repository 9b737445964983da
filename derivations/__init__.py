"""Executable derivations of the seed documents' numbers; ``python -m derivations`` writes them to out/*.md."""
