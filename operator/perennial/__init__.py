"""Perennial: a Kubernetes operator for continuous training of machine-learning models."""

__version__ = "0.1.0"
