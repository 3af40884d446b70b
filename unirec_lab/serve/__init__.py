"""After training: serving a trained model and updating it from feedback (the loop of DESIGN.md 4b)."""
