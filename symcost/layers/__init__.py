"""The layer catalog: one module per family, each registering its layers (``symcost.registry.load_catalog``
imports them all)."""
