"""Firearm markings: pure normalisation of serials and manufacturer names, and the manufacturer table."""
