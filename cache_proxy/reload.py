"""Hot reload of tenants: poll the config file (and SIGHUP); a bad file keeps the old config."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from cache_proxy.config import ConfigError, Settings, load_settings

logger = logging.getLogger(__name__)
RESTART_ONLY_SECTIONS = ("upstream", "embedding", "cache", "server")


class ConfigWatcher:
    def __init__(
        self, path: Path, interval_s: float, apply: Callable[[Settings], None], current: Settings
    ) -> None:
        self._path = path
        self._interval_s = interval_s
        self._apply = apply
        self._current = current
        self._digest = _file_digest(path)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._poll())
        # Only the main thread may install signal handlers (not the case under a test runner).
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, lambda: self.reload(force=True))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def reload(self, force: bool = False) -> bool:
        """Re-read the file if it changed (or if forced); True when a new config was applied."""
        digest = _file_digest(self._path)
        if digest == self._digest and not force:
            return False
        self._digest = digest
        try:
            new = load_settings(self._path)
        except (ConfigError, OSError) as exc:
            logger.error("config reload rejected, keeping the previous config: %s", exc)
            return False
        self._warn_restart_only(new)
        self._apply(new)
        self._current = new
        logger.info("config reloaded: %d tenants", len(new.tenants))
        return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            self.reload()

    def _warn_restart_only(self, new: Settings) -> None:
        for section in RESTART_ONLY_SECTIONS:
            if getattr(new, section) != getattr(self._current, section):
                logger.warning(
                    "config section '%s' changed: it takes effect after a restart", section
                )


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""
