"""Benchmark of the CDS hook path against a bare FastAPI endpoint (`python -m bench`, `make bench`)."""
