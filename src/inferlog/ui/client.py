"""The UI's HTTP client of the API: the UI never imports the model, so every prediction made in
the browser is profiled and logged by the API like any other client's."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx


def _json(response: httpx.Response) -> dict[str, Any]:
    # The API's JSON answers are objects; typed once here for the checker.
    body: dict[str, Any] = response.json()
    return body


class ApiError(RuntimeError):
    """The API answered with an error (the message is the API's own), or did not answer."""

    def __init__(
        self, message: str, errors: list[dict[str, Any]] | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.errors = errors or []
        self.status = status  # None: no answer at all


# A kept-alive connection is dropped by the client well before the API closes it (after
# API_KEEP_ALIVE_SECONDS, at least 1 s): with the same delay on both sides, a request sent on
# a connection the server is closing at that moment fails with no answer.
KEEPALIVE_SECONDS = 0.5


class ApiClient:
    def __init__(self, base_url: str, timeout: float = 30.0, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers=headers,
            limits=httpx.Limits(  # httpx's default pool sizes, a shorter keep-alive
                max_connections=100,
                max_keepalive_connections=20,
                keepalive_expiry=KEEPALIVE_SECONDS,
            ),
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(
                f"The API at {self.base_url} is not reachable ({type(exc).__name__}). "
                "It may be restarting: try again in a moment."
            ) from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                message = body.get("message") or str(body)
                errors = body.get("errors") or []
            except ValueError:
                message, errors = response.text[:200], []
            raise ApiError(
                f"The API answered {response.status_code}: {message}", errors, response.status_code
            )
        return response

    def predict(self, case: dict[str, float]) -> dict[str, Any]:
        return _json(self._call("POST", "/predict", json=case))

    def predict_csv(self, body: bytes) -> str:
        return self._call(
            "POST", "/predict/batch", content=body, headers={"Content-Type": "text/csv"}
        ).text

    def examples(self, label: str | None = None, n: int = 1, fmt: str = "json") -> Any:
        params: dict[str, Any] = {"n": n, "format": fmt}
        if label:
            params["label"] = label
        response = self._call("GET", "/examples", params=params)
        return response.json() if fmt == "json" else response.text

    def stats(self) -> dict[str, Any]:
        return _json(self._call("GET", "/logs/stats"))

    def logs(self, **filters: Any) -> dict[str, Any]:
        """`GET /logs`: the records (newest first) and the window they come from."""
        params = {k: v for k, v in filters.items() if v not in (None, "")}
        return _json(self._call("GET", "/logs", params=params))

    def log(self, transaction_id: str) -> dict[str, Any]:
        return _json(self._call("GET", f"/logs/{quote(transaction_id, safe='')}"))

    def drift(self) -> dict[str, Any]:
        return _json(self._call("GET", "/drift"))

    def model_info(self) -> dict[str, Any]:
        return _json(self._call("GET", "/model-info"))
