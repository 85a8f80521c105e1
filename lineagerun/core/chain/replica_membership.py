"""The replica's membership (a part of ``ReplicaCore``, kept apart for
size): calls to the coordinator (heartbeats, join), configurations pushed
or learned from heartbeat replies, and the link to the successor that a
configuration implies. Pure, like the rest of the core."""

from __future__ import annotations

from lineagerun.core.chain.replica_events import (
    ConfigPushed, Effect, FailCall, Fatal, HeartbeatReplied, ReplyConfig, SaveIdentity, SendAck, SendHeartbeat,
    SendJoin,
)
from lineagerun.core.chain.replica_link import Link
from lineagerun.exceptions import (
    NotHeadError, ShardMismatchError, StaleEpochError, UnavailableError, WrongShardError,
)
from lineagerun.rpc import common_pb2, control_store_pb2, coordinator_pb2


class ReplicaMembership:
    def _coordinator_calls(self, now_ms: int) -> list[Effect]:
        s = self.settings
        if not self.joined:
            if self.join_in_flight_since_ms is not None and now_ms - self.join_in_flight_since_ms < s.join_timeout_ms:
                return []
            if now_ms < self.next_join_ms and self.join_in_flight_since_ms is None:
                return []
            self.join_in_flight_since_ms = now_ms
            return [SendJoin(coordinator_pb2.JoinRequest(
                replica_id=self.me, shard=self.shard, address=s.address, applied_seq=self.applied_seq,
                applied_epoch=self.applied_epoch, cluster_id=self.cluster_id))]
        if self.heartbeat_in_flight is not None and now_ms - self.heartbeat_in_flight < 3 * s.heartbeat_interval_ms:
            return []  # an answer lost without a failure report (simulation) times out here
        if now_ms < self.next_heartbeat_ms:
            return []
        self.heartbeat_in_flight = now_ms
        self.next_heartbeat_ms = now_ms + s.heartbeat_interval_ms
        return [SendHeartbeat(coordinator_pb2.HeartbeatRequest(
            replica_id=self.me, shard=self.shard, address=s.address, epoch=self.epoch,
            applied_seq=self.applied_seq, applied_epoch=self.applied_epoch, caught_up=self.caught_up(),
            cluster_id=self.cluster_id), now_ms)]

    def _saw_newer_epoch(self, epoch: int) -> None:
        self.newest_epoch_seen = max(self.newest_epoch_seen, epoch)
        self.next_heartbeat_ms = 0

    def _on_heartbeat_reply(self, ev: HeartbeatReplied) -> list[Effect]:
        self.heartbeat_in_flight = None
        reply = ev.reply
        if reply.must_join:
            self.joined = False
            self.join_in_flight_since_ms = None
            self.next_join_ms = ev.now_ms
            self.lease_until_ms = 0
            return []
        if not self.joined:
            return []  # an answer to a heartbeat of before our (re)join
        effects = self._adopt(reply.config, ev.now_ms) if reply.HasField("config") else []
        if reply.lease_ms and reply.config.epoch == self.epoch:
            self.lease_until_ms = max(self.lease_until_ms, ev.sent_ms + reply.lease_ms)
        elif not reply.lease_ms:
            self.lease_until_ms = 0
        return effects

    def _on_join_reply(self, reply: coordinator_pb2.JoinReply, now_ms: int) -> list[Effect]:
        self.join_in_flight_since_ms = None
        if reply.cluster_id and self.cluster_id and reply.cluster_id != self.cluster_id:
            self.fatal = True
            return [Fatal(ShardMismatchError(
                f"replica {self.me}'s directory belongs to cluster {self.cluster_id!r}, but the coordinator "
                f"runs cluster {reply.cluster_id!r}; start it with a directory of this cluster"))]
        effects: list[Effect] = []
        if reply.HasField("config"):
            effects.extend(self._adopt(reply.config, now_ms))
        if reply.retry_later:
            self.next_join_ms = now_ms + max(reply.retry_after_ms, 1)
            return effects
        self.joined = True
        self.next_heartbeat_ms = now_ms
        if reply.cluster_id and not self.cluster_id:
            self.cluster_id = reply.cluster_id
            effects.insert(0, SaveIdentity(reply.cluster_id))
        return effects

    def _on_config_pushed(self, ev: ConfigPushed) -> list[Effect]:
        config = ev.update.config
        if config.shard != self.shard:
            return [FailCall(ev.call_id, WrongShardError(
                f"config for shard {config.shard} sent to replica {self.me} of shard {self.shard}"))]
        if config.epoch < self.epoch:
            return [FailCall(ev.call_id, StaleEpochError(
                f"config of epoch {config.epoch} is older than replica {self.me}'s epoch {self.epoch}"))]
        if not self.joined:
            return [FailCall(ev.call_id, UnavailableError(
                f"replica {self.me} has not joined since it started; its configuration comes with the join"))]
        effects = self._adopt(config, ev.now_ms)
        effects.append(ReplyConfig(ev.call_id, control_store_pb2.ConfigAck(epoch=self.epoch)))
        return effects

    def _adopt(self, config: common_pb2.ChainConfig, now_ms: int) -> list[Effect]:
        """Take a configuration at least as new as ours."""
        if config.shard != self.shard or config.epoch < self.epoch:
            return []
        if self.config is not None and config.epoch == self.epoch and config == self.config:
            return []
        was_serving_tail_in = self.epoch if self.is_tail() and self.read_gate_open() else None
        was_head = self.is_head()
        old_epoch = self.epoch
        self.config = common_pb2.ChainConfig()
        self.config.CopyFrom(config)
        self.epoch = config.epoch
        self.newest_epoch_seen = max(self.newest_epoch_seen, self.epoch)
        if self.epoch != old_epoch:
            self.lease_until_ms = 0  # a lease belongs to the configuration it was given with
        members = self.members()
        effects: list[Effect] = []
        if was_head and not self.is_head():
            effects.extend(self._fail_waiting(NotHeadError(
                f"replica {self.me} stopped being the head of shard {self.shard} (epoch {self.epoch}); retry")))
        predecessor = successor = None
        if self.me in members:
            i = members.index(self.me)
            predecessor = config.chain[i - 1] if i > 0 else None
            successor = config.chain[i + 1] if i + 1 < len(members) else None
            if successor is None and config.HasField("joining") and config.joining.replica_id != self.me:
                successor = config.joining
        elif self.is_joining() and config.chain:
            predecessor = config.chain[-1]
        new_pred_id = predecessor.replica_id if predecessor is not None else None
        if new_pred_id != self.predecessor_id or self.epoch != old_epoch:
            self.predecessor_id = new_pred_id
            self.predecessor_committed_seq = None
            self.incoming_snapshot = None
        if self.is_tail():
            stayed_tail = was_serving_tail_in is not None and was_serving_tail_in >= self.epoch - 1
            if predecessor is None or stayed_tail:
                self.read_gate_seq = 0
            elif self.epoch != old_epoch:
                self.read_gate_seq = None
        effects.extend(self._set_link(successor, now_ms, restart=self.epoch != old_epoch))
        if self.is_tail():
            self._commit_as_tail()
        effects.extend(self._release_waiting())
        if self.predecessor_id is not None and self.epoch != old_epoch:
            # Our predecessor's hello may have come before we knew this epoch
            # (and been ignored): tell it where we are without waiting.
            effects.append(SendAck(self.predecessor_id, self._ack()))
        return effects

    def _set_link(self, successor, now_ms: int, restart: bool) -> list[Effect]:
        if successor is None:
            self.link = None
            return []
        to_joiner = self.is_tail()
        if self.link is not None and not restart and self.link.target.replica_id == successor.replica_id \
                and self.link.target.address == successor.address:
            self.link.to_joiner = to_joiner
            return []
        target = common_pb2.ReplicaInfo()
        target.CopyFrom(successor)
        self.link = Link(target=target, to_joiner=to_joiner)
        return self._start_link(now_ms)
