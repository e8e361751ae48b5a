"""Sidecart's service kit: the plumbing every service shares, on well-kept libraries; no business rules."""

__version__ = "0.3.0"
