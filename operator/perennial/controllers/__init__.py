"""kopf handlers: thin — read, call the pure domain logic, apply, write status."""
