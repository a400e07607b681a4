"""Data that ships with xplain: small datasets made or bundled offline, and the demo models fitted on them."""
