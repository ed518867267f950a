"""A slot's wait on its pool's sync lane on Redis (warren/store/synclane.py).

While a slot is idle it has one `BLMOVE` outstanding on a Redis connection of its own and
waits on that socket beside its broker socket and its bell (worker.py), so a sync request goes
from Redis to the sandbox on the slot's own thread, with no hand-over between threads. A
request that reaches a slot after it started another run is read by the keeper and handed to a
free slot (keeper.py), as a broker delivery is.

Redis going away does not stop the slot: it logs once, keeps serving its broker queues, and
tries the lane again every `RETRY_S`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from warren.errors import DecodeError, StoreUnavailable, WarrenError
from warren.invocation import decode_single
from warren.keys import Keys
from warren.ports import Delivery
from warren.store.redis import Blocking, Command, execute_raw, kill_client, redis_errors
from warren.store.synclane import Request, done_command, take_command
from workers.completion import Chunk
from workers.fence import fence_key

log = logging.getLogger("warren.worker")

BLOCK_S = 5  # one BLMOVE waits this long on Redis before the slot sends the next
RETRY_S = 1.0  # after the lane's connection failed
UNBLOCK_WAIT_S = 2.0


class SyncLane:
    """`reclaim` puts back what the slot's taken list holds that no slot runs: called when the
    lane connects again after its connection broke (a BLMOVE may have taken a request whose
    reply went with the connection)."""

    def __init__(self, client: redis.Redis[bytes], keys: Keys, pool: str, taker: str,
                 reclaim: Callable[[], int]) -> None:
        self._client = client
        self._conn = Blocking(client)
        self._command = take_command(keys, pool, taker, BLOCK_S)
        self._reclaim = reclaim
        self._retry_at = 0.0
        self._failing = ""

    @property
    def outstanding(self) -> bool:
        return self._conn.outstanding

    def arm(self) -> None:
        """Have a BLMOVE outstanding (unless one is, or the lane failed moments ago)."""
        if self._conn.outstanding or time.monotonic() < self._retry_at:
            return
        try:
            if self._conn.lost_id:
                with redis_errors("reclaiming the sync lane's requests", self._client):
                    kill_client(self._client, self._conn.lost_id)  # its BLMOVE gone for sure
                    moved = self._reclaim()
                if moved:
                    log.warning("put %d sync request(s) back on the lane: taken as the lane's "
                                "connection broke", moved)
                self._conn.lost_id = 0
            self._conn.send(self._command)
        except StoreUnavailable as exc:
            self._failed(exc)

    def finisher(self) -> Callable[[Sequence[Command]], list[Any]] | None:
        """A way to run a chunk's finishing commands that also arms the lane in the same
        write (what an idle lane costs once, instead of a write of its own); None when the
        lane cannot take it now (armed already, or failing)."""
        if self._conn.outstanding or time.monotonic() < self._retry_at or self._conn.lost_id:
            return None

        def finish(commands: Sequence[Command]) -> list[Any]:
            return self._conn.execute_then(commands, self._command)

        return finish

    def fileno(self) -> int | None:
        return self._conn.fileno()

    def buffered(self) -> bool:
        """Whether the BLMOVE's reply was read already with the replies before it (after a
        finisher's write): it must be taken without waiting on the socket."""
        try:
            return self._conn.buffered()
        except StoreUnavailable as exc:
            self._failed(exc)
            return False

    def take_ready(self) -> bool:
        """Whether a reply to the outstanding BLMOVE is there to take."""
        try:
            return self._conn.ready()
        except StoreUnavailable as exc:
            self._failed(exc)
            return False

    def take(self, readable: bool = False) -> Request | None:
        """The request the outstanding BLMOVE brought, if its reply is there (no wait);
        `readable`: its socket said so (or the reply is buffered), so no need to ask."""
        try:
            if not (readable and self._conn.outstanding) and not self._conn.ready():
                return None
            reply = self._conn.read()
        except StoreUnavailable as exc:
            self._failed(exc)
            return None
        if self._failing:
            log.info("the sync lane answers again")
            self._failing = ""
        return None if reply is None else Request(bytes(reply))

    def cancel(self) -> Request | None:
        """Stop waiting (a draining worker): the BLMOVE is unblocked; a request it took in
        the meantime is returned, to be run."""
        if not self._conn.outstanding:
            return None
        try:
            with redis_errors("unblocking the sync lane", self._client):
                self._client.client_unblock(self._conn.client_id)
            deadline = time.monotonic() + UNBLOCK_WAIT_S
            while not self._conn.ready():
                if time.monotonic() > deadline:
                    self._conn.close()  # its taken list is reclaimed when it connects again
                    return None
                time.sleep(0.01)
            reply = self._conn.read()
        except StoreUnavailable as exc:
            self._failed(exc)
            return None
        return None if reply is None else Request(bytes(reply))

    def close(self) -> None:
        self._conn.close()

    def _failed(self, exc: StoreUnavailable) -> None:
        self._conn.close()
        self._retry_at = time.monotonic() + RETRY_S
        if str(exc) != self._failing:
            log.warning("%s; serving the broker's queues meanwhile, retrying", exc)
            self._failing = str(exc)


def request_chunk(request: Request, client: redis.Redis[bytes], keys: Keys, pool: str,
                  mine: str) -> Chunk | None:
    """A request off the lane as a chunk (its reply on a Redis list); one whose caller gave
    up, or that cannot be read, is taken out of the taker's list `mine` unrun (None)."""
    done = done_command(keys, pool, mine, request.raw)
    try:
        if not request.well_formed:
            raise DecodeError("not a sync lane request")
        invocations = [decode_single(*request.parts())]
    except DecodeError as exc:
        log.warning("dropping a malformed sync lane request: %s", exc)
        invocations = []
    if invocations and request.expired():
        log.info("dropping sync request %s: its caller stopped waiting", invocations[0].request_id)
        invocations = []
    if not invocations:
        try:
            with redis_errors("dropping a sync lane request", client):
                execute_raw(client, [done])
        except WarrenError as exc:
            log.warning("%s", exc)
        return None
    request_id = invocations[0].request_id
    delivery = Delivery(0, b"", reply_to=keys.reply_to(request_id),
                        correlation_id=request_id, redelivered=request.requeued)
    return Chunk(delivery, invocations, fence=fence_key(keys.prefix, invocations), taken=done)
