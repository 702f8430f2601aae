"""YAML recipes shipped with the package (the demo's)."""
