"""Sidecart's dev stack: installs and starts Redis, placement, scheduler and every app beside its daprd."""
