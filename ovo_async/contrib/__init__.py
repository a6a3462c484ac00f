"""Integrations that need extras: `ovo_async.contrib.redis` (the `redis` extra)."""
