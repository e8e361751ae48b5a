"""Sidecart users: sign-up, login with RS256 JWTs, profiles; every record and event goes through Dapr."""
