"""uvicorn as the proxy runs it: keep-alive, connection cap, shutdown grace, and a header
timeout uvicorn lacks (a client that connects and sends nothing, or sends its headers a byte
at a time, would otherwise hold the connection for ever)."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

from cache_proxy.config import ServerSettings


def serve(app: Any, host: str, port: int, log_level: str, server: ServerSettings) -> None:
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        http=_protocol(server.header_timeout_s),
        timeout_keep_alive=int(server.keep_alive_s),
        limit_concurrency=server.max_connections,
        timeout_graceful_shutdown=int(server.shutdown_grace_s),
    )


def _protocol(header_timeout_s: float) -> Any:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: uvicorn's own choice, without the header timeout
        return "auto"

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        """Closes a connection whose request headers are not complete `header_timeout_s`
        after it opened or after the request's first byte."""

        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._start_header_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._start_header_timer()

        def on_headers_complete(self) -> None:
            self._stop_header_timer()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_header_timer()
            super().connection_lost(exc)

        def _start_header_timer(self) -> None:
            self._stop_header_timer()
            self._header_timer = self.loop.call_later(header_timeout_s, self._drop)

        def _stop_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _drop(self) -> None:
            if self.cycle is None or self.cycle.response_complete:  # no request being served
                self.transport.close()

    return HeaderTimeoutProtocol
