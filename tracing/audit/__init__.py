"""Tamper-evident audit trail: hash-chained entries per trace request, signed checkpoints over all
chain heads, signed evidence bundles for mutual legal assistance, and an access log."""
