"""The hosting resources (models, endpoint configs, endpoints) and their rules."""
