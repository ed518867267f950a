"""Every Redis key and queue name of one fleet, derived from its prefix, so fleets never mix.

`prefix` is settings.prefix (WARREN_PREFIX, default "warren"); the tests run fleets side by
side under unique prefixes. Redis keys join with ":", queue names with ".".

Redis (p = prefix):
    p:functions                 set of function names
    p:fn:<name>                 a function's specs, versions, aliases, async config (hash)
    p:reservations              reserved concurrency per function (hash)
    p:code:<sha256>             a code bundle; p:coderefs[:<sha256>] who references it
    p:layers, p:layer:<name>    layer names (set); a layer's versions (hash v:<N>, next_version)
    p:provisioned               provisioned concurrency configs (hash "<fn>:<qualifier>" -> JSON)
    p:provisioned:worker:<id>   what one worker holds ready per config (hash, expiring)
    p:logs:<function>           invocation log stream
    p:stats:<function>          invocation/error counters (hash)
    p:usage:<hour>              metered usage of one hour, per function and version (hash,
                                store/usage.py); p:usage:m:<minute> per-minute counts for
                                charts; p:throttles[:m:<minute>] throttles per function
    p:sem:pool, p:sem:fn:<f>    concurrency leases (zsets of "<function>|<request id>")
    p:reply:<request id>        a sync result, when the reply travels on a Redis list
    p:sync:<pool>               the pool's sync lane on Redis: requests callers push, workers
                                take (list); p:sync:<pool>:taken:<worker id>.<slot> what one
                                slot took and is not finished (list); p:sync:<pool>:takers
                                (set of "<worker id>.<slot>")
    p:worker:<id>               a worker's heartbeat
    p:mappings                  set of mapping uuids; p:mapping:<uuid>:<part> its spec, stats,
                                lease, attempts and its source's checkpoints
    p:pollers                   zset poller id -> heartbeat expiry (ms)
    p:accesskeys                the gateway's access keys (hash id -> name, secret, created)
    p:urls, p:urlof             function URL configs by id, and their ids by function|qualifier
    p:topics                    set of topic names; p:topic:<name> its subscriptions
                                (hash id -> JSON)
RabbitMQ:
    p.async, p.work.<pool>, p.delay.<ms>, p.dead
    p.topic.<name> (a fanout exchange per topic), p.topic.<name>.<subscription id> (its
    subscriptions' durable queues)
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_POOL = "default"  # the work-queue pool of a function that names none
REPLY_LIST_SCHEME = "redis+list:///"  # a reply_to naming a Redis list instead of an AMQP queue


def lease_member(function: str, request_id: str) -> str:
    """A concurrency lease's member in its semaphore zset."""
    return f"{function}|{request_id}"


def lease_function(member: bytes | str) -> str:
    """The function a lease member belongs to."""
    text = member.decode() if isinstance(member, bytes) else member
    return text.split("|", 1)[0]


@dataclass(frozen=True)
class Keys:
    """The names one fleet uses."""

    prefix: str = "warren"

    # ---- RabbitMQ queues --------------------------------------------------------------------
    @property
    def async_queue(self) -> str:
        """Accepted `Event` invocations (and retries / throttled ones coming back) for routers."""
        return f"{self.prefix}.async"

    @property
    def dead_queue(self) -> str:
        """Messages no process could decode, with the reason in their headers."""
        return f"{self.prefix}.dead"

    def work_queue(self, pool: str = DEFAULT_POOL) -> str:
        """Admitted invocations for the workers of one pool."""
        return f"{self.prefix}.work.{pool}"

    def sync_queue(self, pool: str = DEFAULT_POOL) -> str:
        """Sync requests (RequestResponse) for the workers of one pool: a transient classic
        queue, as a waiting caller is the request's only keeper (docs/fleet.md, the sync lane)."""
        return f"{self.prefix}.sync.{pool}"

    def delay_queue(self, delay_ms: int) -> str:
        """A holding queue whose messages dead-letter back to the async queue after `delay_ms`."""
        return f"{self.prefix}.delay.{delay_ms}"

    def all_queues(self, pool: str = DEFAULT_POOL) -> list[str]:
        """The fleet's durable queues (of WARREN_QUEUE_TYPE) for one pool; the sync lane of the
        pool (`sync_queue`) is declared beside them, transient and classic."""
        return [self.async_queue, self.work_queue(pool), self.dead_queue]

    # ---- registry and code ------------------------------------------------------------------
    @property
    def functions(self) -> str:
        return f"{self.prefix}:functions"

    def function(self, name: str) -> str:
        return f"{self.prefix}:fn:{name}"

    @property
    def reservations(self) -> str:
        return f"{self.prefix}:reservations"

    def code(self, sha256: str) -> str:
        return f"{self.prefix}:code:{sha256}"

    @property
    def coderefs(self) -> str:
        return f"{self.prefix}:coderefs"

    def coderef(self, sha256: str) -> str:
        return f"{self.prefix}:coderefs:{sha256}"

    @property
    def layers(self) -> str:
        return f"{self.prefix}:layers"

    def layer(self, name: str) -> str:
        return f"{self.prefix}:layer:{name}"

    @property
    def provisioned(self) -> str:
        """Provisioned concurrency configs: "<function>:<qualifier>" -> config JSON."""
        return f"{self.prefix}:provisioned"

    def provisioned_status(self, worker_id: str) -> str:
        """What one worker holds ready, per config; expires with the worker's heartbeat."""
        return f"{self.prefix}:provisioned:worker:{worker_id}"

    # ---- running ----------------------------------------------------------------------------
    def logs(self, function: str) -> str:
        return f"{self.prefix}:logs:{function}"

    def stats(self, function: str) -> str:
        return f"{self.prefix}:stats:{function}"

    def usage(self, hour: int) -> str:
        """Metered usage of one hour (`hour` = unix time // 3600)."""
        return f"{self.prefix}:usage:{hour}"

    def usage_minute(self, minute: int) -> str:
        """Per-minute counts for the console's charts (`minute` = unix time // 60)."""
        return f"{self.prefix}:usage:m:{minute}"

    def throttles_minute(self, minute: int) -> str:
        return f"{self.prefix}:throttles:m:{minute}"

    @property
    def throttles(self) -> str:
        """Throttles per function: `<f>|sync` (429s at the caller), `<f>|async` (deferrals)."""
        return f"{self.prefix}:throttles"

    @property
    def account_leases(self) -> str:
        """Leases of functions without reserved concurrency: the account's unreserved share."""
        return f"{self.prefix}:sem:pool"

    def function_leases(self, function: str) -> str:
        return f"{self.prefix}:sem:fn:{function}"

    def reply(self, request_id: str) -> str:
        return f"{self.prefix}:reply:{request_id}"

    def reply_to(self, request_id: str) -> str:
        """The AMQP reply_to that names `reply(request_id)` as a Redis list."""
        return REPLY_LIST_SCHEME + self.reply(request_id)

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def sync_lane(self, pool: str = DEFAULT_POOL) -> str:
        """The pool's sync requests on Redis (store/synclane.py; `sync_queue` is the AMQP one)."""
        return f"{self.prefix}:sync:{pool}"

    def sync_taken(self, pool: str, taker: str) -> str:
        """The requests a taker (`<worker id>.<slot>`) took off `sync_lane(pool)` and has not
        finished."""
        return f"{self.prefix}:sync:{pool}:taken:{taker}"

    def sync_takers(self, pool: str) -> str:
        """The takers that may hold requests of `pool` (for requeueing a dead worker's)."""
        return f"{self.prefix}:sync:{pool}:takers"

    @property
    def workers_pattern(self) -> str:
        return f"{self.prefix}:worker:*"

    # ---- mappings ---------------------------------------------------------------------------
    @property
    def mappings(self) -> str:
        return f"{self.prefix}:mappings"

    def mapping(self, mapping_id: str, *parts: str) -> str:
        """A mapping's own keys: its spec, stats, lease, attempts and source checkpoints."""
        return ":".join((self.prefix, "mapping", mapping_id, *parts))

    @property
    def pollers(self) -> str:
        return f"{self.prefix}:pollers"

    # ---- the gateway ------------------------------------------------------------------------
    @property
    def access_keys(self) -> str:
        return f"{self.prefix}:accesskeys"

    @property
    def urls(self) -> str:
        return f"{self.prefix}:urls"

    @property
    def url_index(self) -> str:
        """Function URL ids by "<function>|<qualifier>"."""
        return f"{self.prefix}:urlof"
    # ---- topics -----------------------------------------------------------------------------
    @property
    def topics(self) -> str:
        return f"{self.prefix}:topics"

    def topic(self, name: str) -> str:
        """A topic's subscriptions (hash: subscription id -> JSON)."""
        return f"{self.prefix}:topic:{name}"

    def topic_exchange(self, name: str) -> str:
        """The fanout exchange a topic's messages are published to."""
        return f"{self.prefix}.topic.{name}"

    def subscription_queue(self, topic: str, subscription_id: str) -> str:
        """One subscription's durable queue, bound to its topic's exchange."""
        return f"{self.prefix}.topic.{topic}.{subscription_id}"
