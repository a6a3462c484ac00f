"""Test helpers for code that uses ovo-async."""
