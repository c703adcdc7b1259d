"""Data: the canonical schema, ingest adapters, prepare, the streaming loader and the synthetic generator."""
