"""TLS, mutual TLS and role tokens with generated certificates and tokens: what is let in,
and every way of being turned away (nothing is written by a refused call)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stepline.v1 import worker_pb2_grpc as wpb_grpc

from coordinator import auth, server
from coordinator.config import Settings
from tests import certs as test_certs
from tests.protocol import register_frame
from worker_sdk import (
    TLS,
    AuthenticationError,
    Client,
    CoordinatorUnavailableError,
    PermissionDeniedError,
    Worker,
    step,
    workflow,
)


@step()
async def shout(text: str) -> str:
    return text.upper()


@workflow(name="secure.hello")
async def hello(name: str) -> str:
    return await shout(f"hello {name}")


Starter = Callable[..., Coroutine[Any, Any, server.Running]]


@pytest.fixture
async def start(settings: Settings) -> AsyncIterator[Starter]:
    started: list[server.Running] = []

    async def go(**changes: Any) -> server.Running:
        running = await server.start(replace(settings, **changes))
        started.append(running)
        return running

    yield go
    for running in started:
        await running.stop(grace=0)


@pytest.fixture
def certs(tmp_path: Path) -> test_certs.Certs:
    return test_certs.make(tmp_path / "certs")


def address(running: server.Running, host: str = "127.0.0.1") -> str:
    return f"{host}:{running.port}"


async def test_tls_lets_in_who_trusts_the_ca_and_no_one_in_the_clear(
    start: Starter, certs: test_certs.Certs, tmp_path: Path
) -> None:
    running = await start(tls_cert=certs.server_cert, tls_key=certs.server_key)
    async with (
        Worker(address(running), workflows=[hello], tls=TLS(ca=certs.ca)),
        Client(address(running), tls=TLS(ca=certs.ca.read_bytes())) as client,
    ):
        handle = await client.start_workflow(hello, "tls")
        assert await handle.result(timeout=10) == "HELLO TLS"
    async with Client(address(running)) as plain:
        with pytest.raises(CoordinatorUnavailableError):
            await plain.get_workflow(handle.workflow_id)
    stranger = test_certs.make(tmp_path / "other", ca_name="someone else's CA")
    async with Client(address(running), tls=TLS(ca=stranger.ca)) as untrusting:
        with pytest.raises(CoordinatorUnavailableError):
            await untrusting.get_workflow(handle.workflow_id)


async def test_mutual_tls_needs_a_client_certificate_from_the_ca(
    start: Starter, certs: test_certs.Certs, tmp_path: Path
) -> None:
    running = await start(tls_cert=certs.server_cert, tls_key=certs.server_key, tls_client_ca=certs.ca)
    mine = TLS(ca=certs.ca, cert=certs.client_cert, key=certs.client_key)
    async with (
        Worker(address(running), workflows=[hello], tls=mine),
        Client(address(running), tls=mine) as client,
    ):
        assert await (await client.start_workflow(hello, "mtls")).result(timeout=10) == "HELLO MTLS"
    async with Client(address(running), tls=TLS(ca=certs.ca)) as anonymous:
        with pytest.raises(CoordinatorUnavailableError):
            await anonymous.count_workflows([])
    stranger = test_certs.make(tmp_path / "other", ca_name="someone else's CA")
    forged = TLS(ca=certs.ca, cert=stranger.client_cert, key=stranger.client_key)
    async with Client(address(running), tls=forged) as impostor:
        with pytest.raises(CoordinatorUnavailableError):
            await impostor.count_workflows([])


async def test_tokens_have_roles_and_every_refusal_has_its_status(start: Starter, tmp_path: Path) -> None:
    tokens = {role: auth.new_token(role) for role in auth.ROLES}
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("# role sha256:digest\n" + "\n".join(line for _, line in tokens.values()) + "\n")
    assert all(secret not in tokens_file.read_text() for secret, _ in tokens.values()), "stored hashed"
    running = await start(tokens_file=tokens_file)
    at = address(running)
    worker_token, client_token, admin_token = (tokens[r][0] for r in ("worker", "client", "admin"))

    async with Client(at, api_key=client_token) as client, Client(at, api_key=admin_token) as admin:
        async with Worker(at, workflows=[hello], api_key=worker_token):
            done = await client.start_workflow(hello, "roles")
            assert await done.result(timeout=10) == "HELLO ROLES"
            assert [w.language for w in await admin.list_workers()] == ["python"]
        before = await admin.count_workflows([])

        with pytest.raises(PermissionDeniedError, match=r"a client token may not call .*ListWorkers"):
            await client.list_workers()
        async with Client(at, api_key=worker_token) as as_worker:
            # A worker reads workflows (a direct call in its process awaits the outcome)...
            assert await as_worker.get_handle(done.workflow_id).result(timeout=10) == "HELLO ROLES"
            # ...but does not start them from outside its stream.
            with pytest.raises(PermissionDeniedError, match=r"a worker token may not call .*StartWorkflows"):
                await as_worker.start_workflow(hello, "sneaky")
        for key in ("", "stl_not-a-token", client_token + "x"):
            async with Client(at, api_key=key or None) as nobody:
                with pytest.raises(AuthenticationError, match="missing or unknown token"):
                    await nobody.start_workflow(hello, "anonymous")
        assert await admin.count_workflows([]) == before, "a refused call wrote nothing"

    async with grpc.aio.insecure_channel(at) as channel:
        # A client token on the worker stream: PERMISSION_DENIED before Register is read.
        call = wpb_grpc.WorkerServiceStub(channel).Connect(
            metadata=(("authorization", f"Bearer {client_token}"),)
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _register_and_read(call)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Health answers anyone, so that probes need no token.
        health: Any = health_pb2_grpc.HealthStub(channel)  # its typing stubs omit the methods
        checked = await health.Check(health_pb2.HealthCheckRequest())
        assert checked.status == health_pb2.HealthCheckResponse.SERVING


async def test_the_old_api_key_is_an_admin_token(start: Starter) -> None:
    running = await start(api_key="sesame")
    async with Client(address(running), api_key="sesame") as admin:
        assert await admin.list_workers() == []
    async with Client(address(running)) as nobody:
        with pytest.raises(AuthenticationError):
            await nobody.list_workers()


async def test_serving_a_network_address_in_the_clear_warns_loudly(
    start: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="coordinator"):
        await start(host="0.0.0.0")
    assert any("WITHOUT TLS AND TOKENS" in r.getMessage() for r in caplog.records), caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="coordinator"):
        await start(host="127.0.0.1")
    assert not [r for r in caplog.records if "WITHOUT" in r.getMessage()]


def test_a_bad_tokens_file_names_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "tokens"
    bad.write_text(f"{auth.new_token('worker')[1]}\nsuperuser sha256:{'0' * 64}\n")
    with pytest.raises(
        SystemExit, match=r"tokens:2: expected '<worker\|client\|admin> sha256:<64 hex digits>'"
    ):
        auth.load_tokens(bad)
    token, line = auth.new_token("client")
    assert line == f"client {auth.digest(token)}"
    with pytest.raises(ValueError, match="unknown role"):
        auth.new_token("root")


async def _register_and_read(call: Any) -> None:
    # The refusal may already end the call at the write.
    await call.write(register_frame(names=["secure.hello"]))
    await call.read()
