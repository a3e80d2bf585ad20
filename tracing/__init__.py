"""Firearms tracing service: trace requests between national contact points."""

__version__ = "0.1.0"
