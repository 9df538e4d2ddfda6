"""Who may call what: bearer tokens with roles, checked on every call.

Tokens come from a tokens file (``--tokens-file``): one per line, ``<role> sha256:<hex>``,
the SHA-256 of the token, never the token itself (``stepline token new --role worker``
makes one). The single ``--api-key`` of earlier releases is an admin token. A call
without a known token is UNAUTHENTICATED; a known token whose role may not call the
method is PERMISSION_DENIED. Each presented token is hashed and compared with every
stored digest in constant time. Health answers anyone (load balancers, Kubernetes).

Roles:
    worker   the worker stream (WorkerService), GetServerInfo, and reading workflows
             (GetWorkflow, AwaitWorkflow(s): a workflow called in a worker's process waits
             for its outcome so when another worker took it over)
    client   WorkflowService: start, inspect, await, send, cancel, resume, fork, count
    admin    everything (ListWorkers too), and server reflection
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from coordinator.errors import CoordinatorError, PermissionDenied, Unauthenticated
from coordinator.status import abort

if TYPE_CHECKING:
    MethodHandler: TypeAlias = grpc.RpcMethodHandler[Any, Any]

ROLES = ("worker", "client", "admin")
_OPEN_PREFIX = "/grpc.health.v1.Health/"
_WORKFLOWS = "/stepline.v1.WorkflowService/"
_WORKERS = "/stepline.v1.WorkerService/"
_ADMIN_ONLY = frozenset({_WORKFLOWS + "ListWorkers"})
_WORKER_READS = frozenset(
    _WORKFLOWS + m for m in ("GetServerInfo", "GetWorkflow", "AwaitWorkflow", "AwaitWorkflows")
)


def may_call(role: str, method: str) -> bool:
    """Whether a token of ``role`` may call the gRPC ``method`` ("/pkg.Service/Method")."""
    if role == "admin":
        return True
    if role == "worker":
        return method.startswith(_WORKERS) or method in _WORKER_READS
    if role == "client":
        return method.startswith(_WORKFLOWS) and method not in _ADMIN_ONLY
    return False


def digest(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def new_token(role: str) -> tuple[str, str]:
    """A fresh random token, and its line for the tokens file."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
    token = "stl_" + secrets.token_urlsafe(32)
    return token, f"{role} {digest(token)}"


def load_tokens(path: Path) -> list[tuple[str, bytes]]:
    """(role, digest) pairs from a tokens file; SystemExit naming the line when one is bad."""
    found = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        role, _, stored = line.partition(" ")
        stored = stored.strip()
        if role not in ROLES or not stored.startswith("sha256:") or len(stored) != len("sha256:") + 64:
            raise SystemExit(f"{path}:{n}: expected '<{'|'.join(ROLES)}> sha256:<64 hex digits>'")
        found.append((role, stored.encode()))
    return found


class TokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: list[tuple[str, bytes]]) -> None:
        self._tokens = tokens

    def role_of(self, token: str) -> str | None:
        presented = digest(token).encode()
        role = None
        for candidate, stored in self._tokens:  # every entry, found or not: constant time
            if hmac.compare_digest(presented, stored):
                role = candidate
        return role

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[MethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> MethodHandler | None:
        handler = await continuation(details)
        if handler is None or details.method.startswith(_OPEN_PREFIX):
            return handler
        role = None
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                text = value.decode(errors="replace") if isinstance(value, bytes) else value
                scheme, _, token = text.partition(" ")
                if scheme.lower() == "bearer":
                    role = self.role_of(token.strip())
        if role is None:
            error: CoordinatorError = Unauthenticated(
                "missing or unknown token: send metadata 'authorization: Bearer <token>'"
            )
            return _refusal(handler, error)
        if not may_call(role, details.method):
            return _refusal(handler, PermissionDenied(f"a {role} token may not call {details.method}"))
        return handler


def _refusal(handler: MethodHandler, error: CoordinatorError) -> MethodHandler:
    """A handler of the same shape that ends the call with ``error``."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await abort(context, error)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)
