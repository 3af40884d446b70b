"""Serving a trained run (a versioned, hashed artifact, the HTTP service, the feedback store) and updating it
from feedback (fine-tuning, `unirec-update`, the `unirec-replay` evaluation)."""
