"""An ASGI middleware vLLM loads (``--middleware``) so that its API key guards every route.

vLLM checks the key only under ``/v1`` and a few other prefixes; ``/invocations`` answers chat
requests without it, and ``/tokenize``, ``/metrics`` and the rest are open too. The server
sleep-agent starts therefore loads this guard as well: every request but ``/health`` (the
readiness probe) must carry ``Authorization: Bearer <key>``. The key comes from the server's
environment (``VLLM_API_KEY``), as vLLM's own does.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

OPEN_PATHS = frozenset({"/health"})


class KeyOnEveryRoute:
    def __init__(self, app: Any) -> None:
        self.app = app
        key = os.environ.get("VLLM_API_KEY", "")
        self._digest = hashlib.sha256(key.encode()).digest() if key else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._digest is None or scope["type"] not in ("http", "websocket") or self._allowed(scope):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"error": "Unauthorized"}'})

    def _allowed(self, scope: dict[str, Any]) -> bool:
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        if path in OPEN_PATHS or scope.get("method") == "OPTIONS":
            return True
        header = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        given = hashlib.sha256(token.encode()).digest()
        return scheme.lower() == "bearer" and hmac.compare_digest(given, self._digest)  # type: ignore[arg-type]
