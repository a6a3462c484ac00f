"""Defaults both faces of the client share.

Kept apart from the client so that `from ovo_async import OVOClient` can define the sync
facade's signatures without building the async client, its models (attrs) and its
transport: those load when the first client is made.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "DEFAULT_TIMEOUT", "NOT_GIVEN", "PICKLE_REFUSAL"]

#: Connect within 5 s; each read, write or pool wait within 30 s.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
#: The largest answer body read (decompressed); a larger one is refused unread.
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024


class _NotGiven:
    def __repr__(self) -> str:
        return "NOT_GIVEN"


#: `with_options`: this option is not changed.
NOT_GIVEN: Any = _NotGiven()

PICKLE_REFUSAL = (
    "an ovo-async client cannot be pickled: its connections and event loop belong to "
    "this process. Create one client per process (for example in Celery's "
    "worker_process_init signal) and pass plain data between processes"
)
