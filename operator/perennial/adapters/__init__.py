"""I/O at the operator's edges: the Kubernetes API, Prometheus, the metrics endpoint."""
