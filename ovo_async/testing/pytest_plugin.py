"""pytest fixtures for testing code that uses ovo-async."""
