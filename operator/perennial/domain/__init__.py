"""Pure logic of the operator: no I/O, no kopf, no Kubernetes client (enforced by import-linter)."""
