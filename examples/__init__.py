"""Example clients of the tracing service (run as scripts; importable for the tests)."""
