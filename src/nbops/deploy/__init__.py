"""Deployment: the scoring wheel built from a registered version."""
