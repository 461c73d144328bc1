"""Who may use the web chat: a token per user, and admins who may act for any user.

Tokens are kept as SHA-256 hashes in ``<home>/web/users.json`` (mode 0600), so the file alone lets
nobody in. A token is shown once, when it is made (``sleep-agent web-user add``), the way an API
key is. Hand-written because the page needs nothing of a user store but these few lines.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from sleep_agent.config import check_namespace

FORMAT = 1


@dataclass(frozen=True)
class Login:
    """Who a request comes from: a user, who reaches only their own memory, or an admin."""

    user: str
    admin: bool = False

    def may_act_for(self, user: str) -> bool:
        return self.admin or hmac.compare_digest(self.user, user)


class WebUsers:
    """The chat page's users and their hashed tokens."""

    def __init__(self, home: str | Path) -> None:
        self.path = Path(home).expanduser() / "web" / "users.json"
        self._lock = threading.Lock()

    def add(self, user: str, *, admin: bool = False) -> str:
        """Make ``user`` a new token (replacing any earlier one) and return it; it is not kept."""
        check_namespace(user)
        token = secrets.token_urlsafe(24)
        with self._lock:
            users = self._read()
            users[user] = {"token_sha256": _digest(token), "admin": admin}
            self._write(users)
        return token

    def remove(self, user: str) -> bool:
        with self._lock:
            users = self._read()
            if users.pop(user, None) is None:
                return False
            self._write(users)
            return True

    def login(self, token: str | None) -> Login | None:
        """The user a token belongs to, or ``None``. Every entry is compared, in constant time."""
        if not token:
            return None
        digest, found = _digest(token), None
        for user, entry in self._read().items():
            if hmac.compare_digest(digest, str(entry.get("token_sha256", ""))):
                found = Login(user, bool(entry.get("admin")))
        return found

    def listed(self) -> dict[str, bool]:
        """Each user and whether they are an admin."""
        return {user: bool(entry.get("admin")) for user, entry in sorted(self._read().items())}

    def has_admin(self) -> bool:
        return any(self.listed().values())

    def _read(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(
                f"{self.path} cannot be read ({e}); delete it and add the users again with "
                "`sleep-agent web-user add`"
            ) from e
        return dict(data.get("users", {}))

    def _write(self, users: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"format": FORMAT, "users": users}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
