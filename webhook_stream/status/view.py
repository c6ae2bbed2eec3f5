"""The status view: this worker's share of delivery status and the attempt log.

The view joins the consumer group ``<app_id>-status`` on ``webhooks.deliveries``,
``webhooks.attempts``, ``webhooks.deadletter`` (and ``webhooks.operational``, keyed the
same way: :mod:`.operational`) and keeps the partitions it is assigned
in a :class:`~.store.StatusStore` on local disk. A query about an endpoint goes to the
partition's owner (:mod:`.owners` tells every member the whole map). A partition is
served only once the view has applied it up to the end it saw at assignment time; until
then, and while the group rebalances, queries answer "unavailable, retry" -- never an
incomplete history.

Why not a Faust ``Table`` with ``@app.table_route``: the worker's hot paths are plain
aiokafka consumers (Faust's agents measured ~6,700 no-op events/s here), a table
changelog on Tansu is never compacted (recovery replays all of it) and multi-worker table
recovery crashed with ``ConsistencyError`` (notes: faust-on-tansu sections 2 and 7). The
same pattern -- a local store per owned partition, the applied offset beside it, owners
learnt through the group assignment -- is built here on SQLite.

While the group membership's lease (:mod:`~webhook_stream.core.lease`) is expired -- the
process stalled, and another member may serve its partitions by now, further ahead --
nothing is applied and every query answers "unavailable, retry", as in a rebalance.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

from webhook_stream.core import fetch, fetch_waits, kafka
from webhook_stream.core.lease import Lease
from webhook_stream.core.operational import OPERATIONAL
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import ATTEMPTS, DEADLETTER, DELIVERIES, REJECTED
from webhook_stream.status import operational, queries
from webhook_stream.status.owners import OwnerAssignor, partition_of
from webhook_stream.status.rejected import rejected_page
from webhook_stream.status.store import AttemptQuery, StatusStore

__all__ = ["PartitionedView"]

log = logging.getLogger(__name__)

TOPICS = (DELIVERIES, ATTEMPTS, DEADLETTER, REJECTED, OPERATIONAL)
_EXPIRE_EVERY = 60.0
_MAX_BATCH = 2000
#: A batch whose first fetch brought at least ``_FLOW`` records waits up to ``_LINGER`` for
#: more (status lags by at most that under load). Each transaction's commit is most of a
#: small batch's cost: at 0.1 s, each of three workers' views wrote about 300 records a
#: transaction and cost 1.40x per delivery what one worker's view with the whole load
#: did; at 0.3 s 1.21-1.45x, median 1.27x of six (rows 3c/3d, session 16). A smaller batch
#: (a trickle) is written once a wait of ``_GAP`` brings nothing: not held for the whole
#: linger. Not a flow: a view that has caught up sends a fetch Tansu holds for its whole
#: wait (it never answers early), so an empty short wait is no sign the records stopped.
_LINGER = 0.3
_GAP = 0.05
_FLOW = 100
#: A fetch is answered once this many bytes are there (or its wait ends). Each fetch costs
#: the view and the broker a round trip, and a view whose share of a flow is small got its
#: records in more, smaller fetches: 2.2 fetches per 1,000 deliveries with one worker,
#: 8.4-9.9 with three; 64 KiB took that to 1.1 / 2.9-3.1 (rows 3c/3d, session 17). The
#: price: a lone record waits for the fetch wait to end (200 ms while records come) and
#: is in the status store later (on Tansu a median of 75-109 ms instead of 28).
_MIN_FETCH_BYTES = 65_536


class _Listener(ConsumerRebalanceListener):
    def __init__(self, view: PartitionedView) -> None:
        self._view = view

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._view.revoked()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._view.assigned(assigned)


class PartitionedView:
    """Tails the partitions the status group gives this worker into its store."""

    def __init__(self, settings: Settings, store_path: Path, own_url: str) -> None:
        self._settings = settings
        self.own_url = own_url
        self.store = StatusStore(store_path, settings.status_retention)
        self.assignor = OwnerAssignor(own_url, self.applied)
        self._consumer: Any = None
        self._running = True
        self._rebalancing = True
        self._epoch = 0  # moves at every revocation and assignment
        self._ready: set[int] = set()  # owned and applied up to the end seen at assignment
        self._pos: dict[TopicPartition, int] = {}
        self._target: dict[TopicPartition, int] = {}
        self.partitions = 0
        #: Seconds from start to serving every owned partition (restart time, measured).
        self.caught_up_after: float | None = None
        self.records_read = 0
        self._started = time.monotonic()
        self.lease = Lease(f"{settings.app_id}-status", settings.session_timeout)

    def stop(self) -> None:
        self._running = False
        fetch_waits.wake(self._consumer)

    # -- group membership
    def applied(self) -> dict[int, int]:
        """Per partition, the sum of the next offsets applied (what the assignor weighs)."""
        out: dict[int, int] = {}
        positions = {(t, p): n for (t, p), n in self.store.next_offsets().items()}
        positions.update({(tp.topic, tp.partition): n for tp, n in self._pos.items()})
        for (_, p), n in positions.items():
            out[p] = out.get(p, 0) + n
        return out

    def revoked(self) -> None:
        self._epoch += 1
        self._rebalancing = True
        self._ready = set()

    async def assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self._consumer
        ends = await consumer.end_offsets(assigned) if assigned else {}
        stored = self.store.next_offsets()
        for tp in assigned:
            nxt = stored.get((tp.topic, tp.partition))
            # Tansu's end offset can trail records already fetched (by tens, measured):
            # a store a little ahead is fine. One far ahead belongs to a topic that no
            # longer exists (a broker without persistence restarted): read it again.
            if nxt is not None and ends[tp] < nxt // 2:
                log.warning("status store is ahead of %s (%d > %d): re-reading", tp, nxt, ends[tp])
                self.store.forget(tp.partition)
        stored = self.store.next_offsets()
        fresh = [tp for tp in assigned if (tp.topic, tp.partition) not in stored]
        since_ms = int((time.time() - self._settings.status_retention) * 1000)
        starts = await consumer.offsets_for_times(dict.fromkeys(fresh, since_ms)) if fresh else {}
        self._pos, self._target = {}, {}
        for tp in assigned:
            if tp in fresh:
                found = starts.get(tp)
                start = ends[tp] if found is None else found.offset
            else:
                start = stored[(tp.topic, tp.partition)]
            consumer.seek(tp, start)
            self._pos[tp] = start
            self._target[tp] = ends[tp]  # at most start when the end offset trails
        self._ready = set()
        self._epoch += 1
        self._rebalancing = False
        self._check_ready()
        log.info(
            "status partitions %s assigned (generation %d)",
            sorted({tp.partition for tp in assigned}),
            self.assignor.generation,
        )

    def _check_ready(self) -> None:
        behind = {tp.partition for tp, end in self._target.items() if self._pos[tp] < end}
        owned = {tp.partition for tp in self._target}
        was_ready, self._ready = self._ready, owned - behind
        if not behind and (self._ready != was_ready or self.caught_up_after is None):
            if self.caught_up_after is None:
                self.caught_up_after = time.monotonic() - self._started
            log.info(
                "status partitions %s served, %.2fs after start, %d records read since start",
                sorted(self._ready),
                time.monotonic() - self._started,
                self.records_read,
            )

    # -- the tail
    async def run(self) -> None:
        self._consumer = consumer = kafka.group_consumer(
            self._settings,
            "status",
            background=True,
            max_poll_records=_MAX_BATCH,
            fetch_min_bytes=_MIN_FETCH_BYTES,
            partition_assignment_strategy=(self.assignor,),
        )
        consumer.subscribe(list(TOPICS), listener=_Listener(self))
        expire_at = time.monotonic() + _EXPIRE_EVERY
        try:
            began = self.lease.clock()
            await consumer.start()
            self.lease.attach(consumer, began)
            while self._running:
                batch = await self._gather(consumer)
                if batch and not self.lease.valid():
                    # A stall: apply nothing until the membership is confirmed (then
                    # read again, or sought to the store's offset by a reassignment).
                    for tp, records in batch.items():
                        if tp in consumer.assignment():
                            consumer.seek(tp, records[0].offset)
                    await self.lease.wait_change(0.5)
                    continue
                if batch:
                    rows = [(tp.topic, tp.partition, r) for tp, rs in batch.items() for r in rs]
                    self.records_read += self.store.apply(rows)
                    for tp, records in batch.items():
                        self._pos[tp] = records[-1].offset + 1
                    self._check_ready()
                    await asyncio.sleep(0)  # a long batch must not stall status queries
                if self.partitions == 0:
                    self.partitions = len(consumer.partitions_for_topic(DELIVERIES) or ())
                if time.monotonic() >= expire_at:
                    self.store.expire()
                    expire_at = time.monotonic() + _EXPIRE_EVERY
        finally:
            await consumer.stop()
            self.store.close()

    async def _gather(self, consumer: Any) -> dict[TopicPartition, list[Any]]:
        """One store transaction's records: what came, plus what comes within ``_LINGER``
        (up to ``_MAX_BATCH``; a trickle only until a wait of ``_GAP`` brings nothing).

        Each transaction's commit is most of the store's cost at small batches (measured:
        46 us per delivery at 500 records, 30 at 2,000), and a worker's share of a busy
        cluster arrives a few hundred records per fetch.
        """
        batch = await fetch.getmany(
            consumer, timeout_ms=500, max_records=_MAX_BATCH, idle_ms=fetch_waits.IDLE_POLL_MS
        )
        n, epoch = sum(map(len, batch.values())), self._epoch
        flow = n >= _FLOW
        deadline = time.monotonic() + _LINGER
        while batch and n < _MAX_BATCH and (left := deadline - time.monotonic()) > 0:
            more = await fetch.getmany(
                consumer,
                timeout_ms=max(1, int((left if flow else min(left, _GAP)) * 1000)),
                max_records=_MAX_BATCH - n,
            )
            if self._epoch != epoch:
                return {}  # reassigned meanwhile: every partition was sought to the store's offset
            if not more and not flow:
                break  # a trickle that stopped: write what came
            for tp, records in more.items():
                batch.setdefault(tp, []).extend(records)
                n += len(records)
        return {tp: records for tp, records in batch.items() if tp in self._pos}

    # -- queries: each answers {"ok": ...}, {"forward": url}, {"ask": [urls]},
    # {"missing": True} or {"unavailable": reason}.
    @property
    def _unsettled(self) -> bool:
        """Rebalancing, or the membership in doubt (a stall): serve nothing."""
        return self._rebalancing or not self.lease.valid()

    def _route(self, partition: int, local: bool) -> dict[str, Any] | None:
        """None when this worker serves ``partition`` now; else what to answer."""
        if partition in self._ready and not self._unsettled:
            return None
        owner = self.assignor.owners.get(partition)
        if self._unsettled or owner is None:
            return {"unavailable": "status partitions are being reassigned"}
        if owner == self.own_url:
            return {"unavailable": f"status partition {partition} is catching up"}
        if local:
            return {"unavailable": f"status partition {partition} moved to another worker"}
        return {"forward": owner}

    def attempts(
        self, endpoint_id: str, query: dict[str, Any], local: bool, incarnation: str = ""
    ) -> dict[str, Any]:
        if not self.partitions:
            return {"unavailable": "the status view is starting"}
        routed = self._route(partition_of(endpoint_id, self.partitions), local)
        if routed is not None:
            return routed
        found = queries.attempts(
            self.store.db, endpoint_id, AttemptQuery.from_dict(query), incarnation
        )
        return {"ok": found}

    def operational(self, endpoint_id: str, incarnation: str, local: bool) -> dict[str, Any]:
        if not self.partitions:
            return {"unavailable": "the status view is starting"}
        routed = self._route(partition_of(endpoint_id, self.partitions), local)
        if routed is not None:
            return routed
        return {"ok": operational.recent(self.store.db, endpoint_id, incarnation)}

    def delivery(self, delivery_id: str, endpoint_id: str | None, local: bool) -> dict[str, Any]:
        if not self.partitions:
            return {"unavailable": "the status view is starting"}
        if endpoint_id is not None:
            routed = self._route(partition_of(endpoint_id, self.partitions), local)
            if routed is not None:
                return routed
        if self._unsettled:
            return {"unavailable": "status partitions are being reassigned"}
        found = queries.delivery(self.store.db, delivery_id, self._ready)
        if found is not None:
            if endpoint_id is not None and found["endpoint_id"] != endpoint_id:
                return {"missing": True}
            return {"ok": found}
        if endpoint_id is not None:
            return {"missing": True}
        owned = {tp.partition for tp in self._target}
        if owned - self._ready:
            return {"unavailable": "status partitions are catching up"}
        if local:
            return {"missing": True}
        # Only the id: every other owner is asked (a handful of workers, one request each).
        others = sorted(set(self.assignor.owners.values()) - {self.own_url})
        if len(self.assignor.owners) < self.partitions:
            return {"unavailable": "status partitions are being reassigned"}
        return {"ask": others} if others else {"missing": True}

    # -- queries over every partition: this worker's share, and who holds the rest
    def _share(self, answer: Any) -> dict[str, Any]:
        if not self.partitions:
            return {"unavailable": "the status view is starting"}
        if self._unsettled or len(self.assignor.owners) < self.partitions:
            return {"unavailable": "status partitions are being reassigned"}
        others = sorted(set(self.assignor.owners.values()) - {self.own_url})
        ready = sorted(self._ready)
        return {
            "ok": answer(ready),
            "covered": ready,
            "others": others,
            "partitions": self.partitions,
        }

    def deadletters(self, query: dict[str, Any]) -> dict[str, Any]:
        return self._share(lambda ready: queries.deadletters(self.store.db, ready, **query))

    def rejected(self, query: dict[str, Any]) -> dict[str, Any]:
        return self._share(lambda ready: rejected_page(self.store.db, ready, **query))

    def overview(self, scopes: list[list[str]] | None) -> dict[str, Any]:
        """``scopes``: ``[endpoint id, incarnation or '']`` pairs; None is every endpoint."""
        now_ms = int(time.time() * 1000)
        pairs = None if scopes is None else [(e, i) for e, i in scopes]
        return self._share(lambda ready: queries.overview(self.store.db, ready, pairs, now_ms))

    def endpoint_stats(self, scopes: list[list[str]]) -> dict[str, Any]:
        def mine(ready: list[int]) -> list[dict[str, Any]]:
            owned = set(ready)
            pairs = [(e, i) for e, i in scopes if partition_of(e, self.partitions) in owned]
            return queries.endpoint_stats(self.store.db, pairs, int(time.time() * 1000))

        return self._share(mine)

    def positions(self) -> list[list[Any]]:
        """``[topic, partition, next offset to apply]`` for each owned partition."""
        if self._rebalancing:
            return []
        return [[tp.topic, tp.partition, self._pos[tp]] for tp in self._target if tp in self._pos]

    def info(self) -> dict[str, Any]:
        return {
            "owned": sorted(tp.partition for tp in self._target if tp.topic == DELIVERIES),
            "ready": sorted(self._ready),
            "rebalancing": self._rebalancing,
            "generation": self.assignor.generation,
            "caught_up_after_s": self.caught_up_after,
            "records_read": self.records_read,
            **self.store.counts(),
        }
