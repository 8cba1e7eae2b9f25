"""The commands' way through a running server (``--server URL``): its JSON API, with the
token, on the standard library's HTTP client. A server's refusal is one ``error:`` line."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tuner.core.errors import ConfigError, StorageError, StudyNotFoundError
from tuner.service.token import read_token

TIMEOUT_S = 120.0  # a submit loads the study's data on the server


class Client:
    def __init__(self, server: str, token_file: Path | None = None) -> None:
        if not server.startswith(("http://", "https://")):
            raise ConfigError(f"--server must be an http:// or https:// URL, got {server!r}")
        self.base = server.rstrip("/")
        self.token = read_token(token_file)[0]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json",
                     **({"Content-Type": "application/json"} if data else {})})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            detail = _detail(e)
            if e.code == 404:
                raise StudyNotFoundError(detail) from None
            if e.code == 401:
                raise ConfigError(f"the server refused the token: {detail}") from None
            raise ConfigError(f"the server refused: {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise StorageError(f"cannot reach the server at {self.base}: {reason}") from None

    def submit(self, text: str, **fields: Any) -> dict[str, Any]:
        body = {"study_file": text, **{k: v for k, v in fields.items() if v is not None}}
        return self._call("POST", "/api/v1/studies", body)

    def queue(self) -> dict[str, Any]:
        return self._call("GET", "/api/v1/studies")

    def act(self, action: str, name: str, **fields: Any) -> dict[str, Any]:
        body = {k: v for k, v in fields.items() if v is not None} if action == "resume" else None
        return self._call("POST", f"/api/v1/studies/{quote(name, safe='')}/{action}", body)


def _detail(e: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(e.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}"
                           for d in detail if isinstance(d, dict))
    return str(detail or f"HTTP {e.code} {e.reason}")
