"""Firearm markings: pure normalisation of serials and manufacturer names, the manufacturer table,
match keys and match classes (pure); registries, their adapters (local, HTTP) and cross-checks."""
