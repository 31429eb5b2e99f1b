"""Demo lab."""
