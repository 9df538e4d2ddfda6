"""Server reflection: a client with no .proto files lists the services and calls one."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.ids import unique
from worker_sdk import Client


def _reflect_and_get(address: str, workflow_id: str) -> tuple[list[str], dict[str, object]]:
    """What grpcurl does: services from reflection, then a call built from the reflected types."""
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(database.get_services())
        pool = descriptor_pool.DescriptorPool(database)
        method = pool.FindServiceByName("stepline.v1.WorkflowService").FindMethodByName("GetWorkflow")
        request_type = message_factory.GetMessageClass(method.input_type)
        response_type = message_factory.GetMessageClass(method.output_type)
        call: grpc.UnaryUnaryMultiCallable[Any, Any] = channel.unary_unary(
            "/stepline.v1.WorkflowService/GetWorkflow",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        response = call(json_format.ParseDict({"workflowId": workflow_id}, request_type()), timeout=10)
        return services, json_format.MessageToDict(response)


async def test_reflection_lists_the_services_and_a_call_built_from_it_gets_a_workflow(
    address: str, client: Client
) -> None:
    workflow_id = unique("reflected")
    await client.start_workflow("nobody.serves.this", 1, workflow_id=workflow_id)
    services, answer = await asyncio.to_thread(_reflect_and_get, address, workflow_id)
    assert services == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "stepline.v1.WorkerService",
        "stepline.v1.WorkflowService",
    ]
    workflow = answer["workflow"]
    assert isinstance(workflow, dict)
    assert (workflow["workflowId"], workflow["workflowName"], workflow["status"]) == (
        workflow_id,
        "nobody.serves.this",
        "WORKFLOW_STATUS_ENQUEUED",
    )
