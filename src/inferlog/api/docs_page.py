"""The interactive API documentation (`/docs`), its scripts pinned by version and integrity.

FastAPI's own page loads Swagger UI from a CDN by major version and without integrity
checks: whatever the CDN serves runs with the page's access to the API. Here the exact release
is named and the browser refuses files whose SHA-384 differs from the npm package's own
(`npm pack swagger-ui-dist@5.35.0`; jsDelivr serves npm files as published). ReDoc is not
served.
"""

from __future__ import annotations

import html
import json

from fastapi.responses import HTMLResponse

SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0"
SWAGGER_JS_SHA384 = "sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9"
SWAGGER_CSS_SHA384 = "sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I"


def swagger_ui_page(openapi_url: str, title: str) -> HTMLResponse:
    options = {"url": openapi_url, "dom_id": "#swagger-ui", "deepLinking": True}
    return HTMLResponse(
        f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="{SWAGGER_UI}/swagger-ui.css"
      integrity="{SWAGGER_CSS_SHA384}" crossorigin="anonymous">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{SWAGGER_UI}/swagger-ui-bundle.js"
        integrity="{SWAGGER_JS_SHA384}" crossorigin="anonymous"></script>
<script>SwaggerUIBundle({json.dumps(options)});</script>
</body>
</html>
"""
    )
