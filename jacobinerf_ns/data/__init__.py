"""Datasets, dataparsers, the synthetic scene generator and datamanagers (kept import-light: see ENVIRONMENT.md #6)."""
