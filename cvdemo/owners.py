"""What visitors own for a while: one hashed folder per owner (a browser session or an API
caller's id), forgotten when the session ends or after ``ttl_s`` unused. The retrieval's private
additions and the teaching examples both keep their state this way."""
from __future__ import annotations

import hashlib
import shutil
import threading
import time
from pathlib import Path


class PerOwner:
    """``self._owners`` maps an owner to its state, which has a ``used`` monotonic time; the
    owner's files live in :meth:`folder`. Subclasses add what each owner holds."""

    def __init__(self, root: Path, ttl_s: float):
        self.root = Path(root)
        self.ttl_s = ttl_s
        self._owners: dict = {}
        self._lock = threading.Lock()

    def folder(self, owner: str) -> Path:
        # the owner's id comes from a client: hashed, it can never name a path
        return self.root / hashlib.sha256(str(owner).encode()).hexdigest()[:24]

    def held(self) -> list[Path]:
        """The folders of the owners still live (the housekeeping never removes them)."""
        with self._lock:
            return [self.folder(owner) for owner in self._owners]

    def forget(self, owner: str | None) -> None:
        """Drop everything of ``owner`` (the session ended, or it asked)."""
        if not owner:
            return
        with self._lock:
            self._owners.pop(owner, None)
        shutil.rmtree(self.folder(owner), ignore_errors=True)

    def _sweep(self) -> None:
        """Forget owners unused for ``ttl_s`` (an API client has no session end to tell us)."""
        now = time.monotonic()
        with self._lock:
            stale = [o for o, owned in self._owners.items() if now - owned.used > self.ttl_s]
        for owner in stale:
            self.forget(owner)
