"""What a client's session stream sends next: the queued messages, packed
into as few stream messages as possible (a stream write costs far more
than the few bytes of a call's message)."""

from __future__ import annotations

from collections import deque

from lineagerun.rpc import node_pb2

# Specs merged into one SubmitTasks message at most: bounds a message's size.
SUBMIT_BATCH_MAX = 1000
# Queued messages sent as one ClientMessage.batch at most.
OUTBOX_BATCH_MAX = 256
# Sent on their own: values and functions can be large, and a batch must
# stay well under the channel's message size limit.
UNBATCHED_KINDS = frozenset({"put_object", "export_function", "register"})


def next_stream_message(outbox: deque) -> node_pb2.ClientMessage:
    """The next stream message out of a non-empty ``outbox``: consecutive
    submissions merged into one SubmitTasks, and whatever else is queued
    behind (up to a value or a function) as one batch, in order. A
    ``get`` right after a ``remote()`` usually finds the submission still
    queued, and a pipelined actor's results pile up while the stream
    writes the previous one: each goes as one write instead of several."""
    message = _take(outbox)
    if not outbox or message.WhichOneof("kind") in UNBATCHED_KINDS:
        return message
    messages = [message]
    submissions = message.WhichOneof("kind") == "submit_tasks"
    while outbox and len(messages) < OUTBOX_BATCH_MAX and outbox[0].WhichOneof("kind") not in UNBATCHED_KINDS:
        if outbox[0].WhichOneof("kind") == "submit_tasks":
            if submissions:
                break  # one SubmitTasks (<= SUBMIT_BATCH_MAX specs) per stream message
            submissions = True
        messages.append(_take(outbox))
    if len(messages) == 1:
        return message
    return node_pb2.ClientMessage(batch=node_pb2.ClientMessages(messages=messages))


def _take(outbox: deque) -> node_pb2.ClientMessage:
    message = outbox.popleft()
    if message.WhichOneof("kind") == "submit_tasks":
        specs = message.submit_tasks.specs
        while outbox and outbox[0].WhichOneof("kind") == "submit_tasks" and len(specs) < SUBMIT_BATCH_MAX:
            specs.extend(outbox.popleft().submit_tasks.specs)
    return message
