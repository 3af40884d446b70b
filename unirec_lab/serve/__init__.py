"""Serving a trained run: a versioned, hashed artifact (export / load), the HTTP service, the feedback store."""
