"""Redis memory use against its budget (`maxmemory`), from `INFO memory`.

With `maxmemory-policy noeviction`, a full Redis answers `OOM` to `XADD`: the API's shipper
spools records to disk until the pipeline has caught up and trimmed. `status`, `/logs/stats`
and the Monitoring tab show how close to that Redis is.
"""

from __future__ import annotations

from typing import Any


def memory_use(info: dict[str, Any]) -> dict[str, Any]:
    used = int(info.get("used_memory", 0))
    budget = int(info.get("maxmemory", 0)) or None  # 0: no budget set
    return {
        "used_bytes": used,
        "max_bytes": budget,
        "used_share": round(used / budget, 4) if budget else None,
        "policy": info.get("maxmemory_policy"),
    }
