"""The HTTP API: app factory, dependencies, routers. Thin: parse, authorise, call, render."""
