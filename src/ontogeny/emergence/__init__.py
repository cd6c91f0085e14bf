"""emergence."""
