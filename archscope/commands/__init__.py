"""One module per CLI command; each defines a click command and imports torch only when run."""
