"""A fake worker for node-manager tests: speaks the Session protocol, runs
"functions" chosen by the FunctionRecord's name, never unpickles anything.

Functions (FunctionRecord.name):
  echo        returns its first argument's payload unchanged
  crash       exits the process at once (os._exit(3))
  sleep       sleeps float(first arg inline) seconds, returns b"slept"
  shm         writes its first argument's bytes into a shm file of the node's
              store and returns it by name (as a real worker does for large values)
  check_spec  returns b"found" if its TaskSpec is in the control store
  Counter     actor class: constructor returns nothing; methods:
                incr -> returns b"<count after>", seq -> b"<sequence_number>"
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import time

from lineagerun.objects import shm
from lineagerun.rpc import node_pb2, node_pb2_grpc
from lineagerun.transport.auth import read_token_file
from lineagerun.transport.channels import make_channel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--node-manager", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--session-dir", required=True)
    args = parser.parse_args()
    TOKEN_FILE.append(args.token_file)
    control_address = ""
    channel = make_channel(args.node_manager, read_token_file(args.token_file))
    outbox: queue.Queue = queue.Queue()
    outbox.put(node_pb2.ClientMessage(register=node_pb2.Register(
        worker_id=bytes.fromhex(args.worker_id), pid=os.getpid(), kind=node_pb2.Register.WORKER)))

    def requests():
        while True:
            message = outbox.get()
            if message is None:
                return
            yield message

    stub = node_pb2_grpc.NodeManagerStub(channel)
    names: dict[bytes, str] = {}
    store_session = ""
    counter = 0
    for message in stub.Session(requests()):
        kind = message.WhichOneof("kind")
        if kind == "registered":
            store_session = message.registered.store_session_id
            control_address = message.registered.control_store_address
        elif kind == "exit":
            break
        elif kind == "execute_task":
            task = message.execute_task
            if task.HasField("function"):
                names[task.function.function_id] = task.function.name
            spec = task.spec
            name = spec.method_name if spec.is_actor_task else names.get(spec.function_id, "?")
            counter, returns = run(name, task, store_session, counter, control_address)
            outbox.put(node_pb2.ClientMessage(task_finished=node_pb2.TaskFinished(
                task_id=spec.task_id, attempt_number=task.attempt_number, returns=returns)))
    outbox.put(None)
    channel.close()


def _spec_stored(spec, control_address: str) -> bool:
    from lineagerun.control.client import ControlStoreClient
    from lineagerun.core.ids import TaskID
    from lineagerun.core.keys import task_key

    with ControlStoreClient(control_address, read_token_file(TOKEN_FILE[0])) as client:
        return client.get(task_key(TaskID(spec.task_id))) == spec.SerializeToString()


TOKEN_FILE: list[str] = []


def run(name: str, task, store_session: str, counter: int, control_address: str = ""):
    spec = task.spec
    ids = [spec.task_id + i.to_bytes(4, "big") for i in range(1, spec.num_returns + 1)]
    value = b""
    if name == "crash":
        os._exit(3)
    elif name == "echo" and task.args[0].payload.WhichOneof("kind") == "shm_name":
        return counter, [_write_shm(ids[0], _arg_bytes(task.args[0].payload, store_session), store_session)]
    elif name == "echo":
        return counter, [node_pb2.ObjectResult(object_id=oid, payload=task.args[0].payload) for oid in ids]
    elif name == "sleep":
        time.sleep(float(task.args[0].payload.inline.decode()))
        value = b"slept"
    elif name == "shm":
        return counter, [_write_shm(ids[0], _arg_bytes(task.args[0].payload, store_session), store_session)]
    elif name == "incr":
        counter += 1
        value = str(counter).encode()
    elif name == "check_spec":
        value = b"found" if _spec_stored(spec, control_address) else b"missing"
    elif name == "seq":
        value = str(spec.sequence_number).encode()
    return counter, [node_pb2.ObjectResult(object_id=oid, payload=node_pb2.ObjectPayload(
        inline=value, size_bytes=len(value))) for oid in ids]


def _write_shm(object_id: bytes, data: bytes, store_session: str):
    path = shm.allocate_object_file(store_session, object_id, len(data))
    with open(path, "r+b") as f:
        f.write(data)
    shm.seal_object_file(store_session, object_id)
    payload = node_pb2.ObjectPayload(shm_name=os.path.basename(shm.object_path(store_session, object_id)),
                                     size_bytes=len(data))
    return node_pb2.ObjectResult(object_id=object_id, payload=payload)


def _arg_bytes(payload, store_session: str) -> bytes:
    if payload.WhichOneof("kind") == "inline":
        return payload.inline
    with open(os.path.join(shm.SHM_DIR, payload.shm_name), "rb") as f:
        return f.read()


if __name__ == "__main__":
    threading.current_thread().name = "fake-worker"
    sys.exit(main())
