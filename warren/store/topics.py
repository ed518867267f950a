"""Topics and their subscriptions in Warren's Redis (keys.topics, keys.topic(name))."""

from __future__ import annotations

from typing import Any

import orjson
import redis

from warren.errors import Conflict, NotFound
from warren.keys import Keys
from warren.store.redis import redis_errors
from warren.topic import Subscription, check_name


class TopicStore:
    def __init__(self, client: redis.Redis[Any], prefix: str = "warren") -> None:
        self.redis = client
        self.keys = Keys(prefix)

    def create(self, name: str) -> bool:
        """Add a topic; False when it existed already (creating is idempotent, as in SNS)."""
        with redis_errors("topics", self.redis):
            return bool(self.redis.sadd(self.keys.topics, check_name(name)))

    def exists(self, name: str) -> bool:
        with redis_errors("topics", self.redis):
            return bool(self.redis.sismember(self.keys.topics, name))

    def require(self, name: str) -> None:
        if not self.exists(name):
            raise NotFound(f"topic {name!r} not found (see `warren topic list`)")

    def names(self) -> list[str]:
        with redis_errors("topics", self.redis):
            return sorted(n.decode() if isinstance(n, bytes) else n
                          for n in self.redis.smembers(self.keys.topics))

    def delete(self, name: str) -> list[Subscription]:
        """Remove a topic and its subscriptions; returns them (their queues go too)."""
        subscriptions = self.subscriptions(name)
        with redis_errors("topics", self.redis):
            pipe = self.redis.pipeline()
            pipe.srem(self.keys.topics, name)
            pipe.delete(self.keys.topic(name))
            pipe.execute()
        return subscriptions

    def add(self, subscription: Subscription) -> None:
        self.require(subscription.topic)
        with redis_errors("topics", self.redis):
            if not self.redis.hsetnx(self.keys.topic(subscription.topic), subscription.id,
                                     orjson.dumps(subscription.to_dict())):
                raise Conflict(f"subscription {subscription.id} exists")

    def remove(self, topic: str, subscription_id: str) -> Subscription:
        subscription = self.get(topic, subscription_id)
        with redis_errors("topics", self.redis):
            self.redis.hdel(self.keys.topic(topic), subscription_id)
        return subscription

    def get(self, topic: str, subscription_id: str) -> Subscription:
        with redis_errors("topics", self.redis):
            raw = self.redis.hget(self.keys.topic(topic), subscription_id)
        if raw is None:
            raise NotFound(f"topic {topic!r} has no subscription {subscription_id!r} "
                           f"(see `warren topic list {topic}`)")
        return Subscription.from_dict(orjson.loads(raw))

    def subscriptions(self, topic: str) -> list[Subscription]:
        with redis_errors("topics", self.redis):
            raw = self.redis.hvals(self.keys.topic(topic))
        return sorted((Subscription.from_dict(orjson.loads(r)) for r in raw),
                      key=lambda s: (s.created, s.id))

    def all_subscriptions(self) -> list[Subscription]:
        """Every subscription of every topic (what the relays consume)."""
        names = self.names()
        if not names:
            return []
        with redis_errors("topics", self.redis):
            pipe = self.redis.pipeline(transaction=False)
            for name in names:
                pipe.hvals(self.keys.topic(name))
            replies = pipe.execute()
        return [Subscription.from_dict(orjson.loads(r)) for reply in replies for r in reply]
