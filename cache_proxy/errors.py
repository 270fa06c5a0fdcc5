"""One exception tree; every error the proxy answers with is one of these.

    ProxyError                      (status, OpenAI error type, message, param)
    ├── BadRequest            400   malformed request; `param` names the field
    ├── Unauthorized          401   unknown or missing API key
    ├── Forbidden             403   admin API without the admin token
    ├── RequestTimeout        408   the body did not arrive within `server.body_timeout_s`
    ├── PayloadTooLarge       413   body over `server.max_body_bytes`
    ├── UpstreamError               the engine could not give a complete answer
    │   ├── UpstreamUnreachable   502
    │   ├── UpstreamBadGateway    502   engine 5xx or a broken/cut stream
    │   ├── UpstreamOverloaded    503
    │   ├── UpstreamTimeout       504
    │   └── UpstreamClientError   4xx   engine rejected the request: passed through
    ├── InternalError         500   a bug of ours, logged with its traceback (never a 500 page)
    ├── EmbedderFailed        503   the embedding model raised on this request
    ├── SharedTierUnavailable 503   an admin change could not reach Redis (done locally)
    └── NotReady              503   embedder not loaded yet

`to_openai_body` is the single place an error becomes OpenAI's JSON shape.
"""

from __future__ import annotations

from typing import Any


class ProxyError(Exception):
    status_code = 500
    error_type = "server_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def to_openai_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class BadRequest(ProxyError):
    status_code = 400
    error_type = "invalid_request_error"


class Unauthorized(ProxyError):
    status_code = 401
    error_type = "invalid_request_error"

    def __init__(self, message: str = "Incorrect or missing API key.") -> None:
        super().__init__(message, code="invalid_api_key")


class Forbidden(ProxyError):
    status_code = 403
    error_type = "invalid_request_error"


class PayloadTooLarge(ProxyError):
    status_code = 413
    error_type = "invalid_request_error"


class RequestTimeout(ProxyError):
    status_code = 408
    error_type = "invalid_request_error"


class NotReady(ProxyError):
    status_code = 503
    error_type = "server_error"


class InternalError(ProxyError):
    """A bug of ours: the client gets the OpenAI shape; the log gets the traceback."""

    def __init__(self) -> None:
        super().__init__("Internal error in the cache proxy; it was logged.")


class EmbedderFailed(ProxyError):
    status_code = 503
    error_type = "server_error"

    def __init__(self) -> None:
        super().__init__("The embedding model failed on this request; retry shortly.")


class SharedTierUnavailable(ProxyError):
    """The shared cache tier (Redis) did not answer an admin change that must reach all."""

    status_code = 503
    error_type = "server_error"


class UpstreamError(ProxyError):
    status_code = 502
    error_type = "upstream_error"
    kind = "bad_gateway"


class UpstreamUnreachable(UpstreamError):
    kind = "unreachable"


class UpstreamBadGateway(UpstreamError):
    kind = "bad_gateway"


class UpstreamOverloaded(UpstreamError):
    status_code = 503
    kind = "overloaded"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    kind = "timeout"


class UpstreamClientError(UpstreamError):
    """The engine answered 4xx: its body is passed through unchanged."""

    kind = "client_error"

    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        message = str(body.get("error", {}).get("message", "")) if isinstance(body, dict) else ""
        super().__init__(message or f"upstream answered {status_code}")
        self.status_code = status_code
        self.body = body

    def to_openai_body(self) -> dict[str, Any]:
        if isinstance(self.body, dict) and "error" in self.body:
            return self.body
        return super().to_openai_body()
