"""`python -m inferlog.ui`: serve the Gradio UI on UI_HOST:UI_PORT, talking to API_URL."""

from __future__ import annotations

import logging
import os
import sys

from inferlog.cli import port_taken
from inferlog.config import get_settings

log = logging.getLogger("inferlog.ui")


def main() -> int:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if port_taken(settings.ui_host, settings.ui_port, "UI_PORT"):
        return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per UI request otherwise
    from inferlog.ui.app import build_app
    from inferlog.ui.client import ApiClient
    from inferlog.ui.common import CSS

    key = settings.ui_api_key.get_secret_value() if settings.ui_api_key else None
    client = ApiClient(settings.api_url, api_key=key)
    app = build_app(client, settings.kibana_url, settings.index_logs)
    log.info("UI on http://%s:%d (API at %s)", settings.ui_host, settings.ui_port, settings.api_url)
    app.launch(
        server_name=settings.ui_host,
        server_port=settings.ui_port,
        css=CSS,
        show_error=False,
        quiet=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
