"""Alerts and dashboard for Perennial's metrics (see docs/operations.md, "Alerts" and "Dashboard")."""
