"""Kibana names and links shared by the saved objects (`logs_pipeline/kibana.py`) and the UI."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

# A record's neighbourhood in Discover: wide enough for clock skew between the API and Kibana.
DISCOVER_MARGIN = dt.timedelta(minutes=15)


def data_view_id(index: str) -> str:
    """The id of the data view `setup` imports for `index` (its alias)."""
    return f"inferlog-{index}"


def _rison_string(text: str) -> str:
    """A string in Rison, the notation of Kibana's URL state: quoted, `!` and `'` escaped."""
    return "'" + text.replace("!", "!!").replace("'", "!'") + "'"


def discover_url(kibana_url: str, index: str, transaction_id: str, timestamp: str) -> str:
    """Kibana 8 Discover on `index`'s data view, showing the record of one transaction.

    The data view goes in the app state's `index` key, which every 8.x reads; Kibana 8.15+
    turns it into its newer `dataSource` form itself."""
    moment = dt.datetime.fromisoformat(timestamp)
    start = (moment - DISCOVER_MARGIN).isoformat()
    end = (moment + DISCOVER_MARGIN).isoformat()
    query = f'transaction.id : "{transaction_id}"'
    app_state = (
        f"(index:{_rison_string(data_view_id(index))},"
        f"query:(language:kuery,query:{_rison_string(query)}))"
    )
    global_state = f"(time:(from:{_rison_string(start)},to:{_rison_string(end)}))"
    safe = "():,!'*-."
    return (
        f"{kibana_url.rstrip('/')}/app/discover#/"
        f"?_g={quote(global_state, safe=safe)}&_a={quote(app_state, safe=safe)}"
    )
