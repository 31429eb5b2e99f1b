"""Device layer."""
