"""Alerts and dashboard for Perennial's metrics (see the README, "Alerts and dashboard")."""
