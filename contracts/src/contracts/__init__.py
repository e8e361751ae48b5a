"""Sidecart's event and API contracts: declared once here, exported as JSON Schema for other languages."""
