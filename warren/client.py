"""The Python client: registry operations and invocation, built from settings or the environment."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from warren.function import Alias, FunctionSpec
from warren.invocation import InvocationResult
from warren.ports import Dispatcher
from warren.settings import Settings
from warren.store.codes import CodeStore
from warren.store.redis import connect
from warren.store.registry import Registry


class Client:
    """`warren.Client()` talks to the fleet named by WARREN_AMQP_URL / WARREN_REDIS_URL.

    Connections open lazily, so building a client never fails on an unreachable service; the
    first call that needs one raises StoreUnavailable or BrokerUnavailable with the URL.
    """

    def __init__(
        self,
        amqp_url: str | None = None,
        redis_url: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        settings: Settings | None = None,
    ) -> None:
        if settings is None:
            settings = Settings.from_environ(
                os.environ if environ is None else environ, amqp_url=amqp_url, redis_url=redis_url
            )
        self.settings = settings
        self.redis = connect(settings.redis)
        self.codes = CodeStore(self.redis, prefix=settings.prefix)
        self.registry = Registry(
            self.redis,
            self.codes,
            prefix=settings.prefix,
            account_concurrency=settings.account_concurrency,
        )
        self._invoker: Dispatcher | None = None
        self._topics: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Client:
        return cls(settings=settings)

    # ---- registry ---------------------------------------------------------------------------
    def create_function(
        self, name: str, *, code: Path | str, handler: str, **options: Any
    ) -> FunctionSpec:
        return self.registry.create_function(name, code=Path(code), handler=handler, **options)

    def update_function(
        self, name: str, *, code: Path | str | None = None, **options: Any
    ) -> FunctionSpec:
        return self.registry.update_function(
            name, code=None if code is None else Path(code), **options
        )

    def get_function(self, name: str, qualifier: str | None = None) -> FunctionSpec:
        return self.registry.get_function(name, qualifier)

    def list_functions(self) -> list[FunctionSpec]:
        return self.registry.list_functions()

    def list_versions(self, name: str) -> list[FunctionSpec]:
        return self.registry.list_versions(name)

    def delete_function(self, name: str) -> None:
        self.registry.delete_function(name)

    def publish_version(self, name: str, description: str = "") -> FunctionSpec:
        return self.registry.publish_version(name, description)

    def create_alias(
        self,
        name: str,
        alias: str,
        version: str,
        weights: Mapping[str, float] | None = None,
        description: str = "",
    ) -> Alias:
        return self.registry.create_alias(name, alias, version, weights, description)

    def update_alias(
        self,
        name: str,
        alias: str,
        version: str | None = None,
        weights: Mapping[str, float] | None = None,
        description: str | None = None,
    ) -> Alias:
        return self.registry.update_alias(name, alias, version, weights, description)

    def get_alias(self, name: str, alias: str) -> Alias:
        return self.registry.get_alias(name, alias)

    def delete_alias(self, name: str, alias: str) -> None:
        self.registry.delete_alias(name, alias)

    def list_aliases(self, name: str) -> list[Alias]:
        return self.registry.list_aliases(name)

    def set_concurrency(self, name: str, n: int) -> None:
        self.registry.set_concurrency(name, n)

    def clear_concurrency(self, name: str) -> None:
        self.registry.clear_concurrency(name)

    def get_concurrency(self, name: str) -> int | None:
        return self.registry.get_concurrency(name)

    # ---- invocation (router.dispatch does the work) -----------------------------------------
    @property
    def invoker(self) -> Dispatcher:
        if self._invoker is None:
            from router.dispatch import Dispatcher as FleetDispatcher

            self._invoker = FleetDispatcher(self.settings, self.registry, self.redis)
        return self._invoker

    def invoke(
        self,
        name: str,
        payload: Any = None,
        qualifier: str | None = None,
        invocation_type: str = "RequestResponse",
        log_tail: bool = False,
    ) -> InvocationResult:
        """Invoke as Lambda does; the result has status_code, payload, function_error,
        executed_version and log_result."""
        return self.invoker.invoke(
            name, payload, qualifier=qualifier, invocation_type=invocation_type, log_tail=log_tail
        )

    def invoke_many(
        self, name: str, payloads: Iterable[Any], **options: Any
    ) -> list[InvocationResult]:
        """Batch submission (e.g. many `Event` invocations, each 202 backed by a confirm)."""
        return self.invoker.invoke_many(name, payloads, **options)

    # ---- topics (router.topics does the work) -----------------------------------------------
    @property
    def topics(self) -> Any:
        """The fleet's topics (router.topics.Topics): create, subscribe, publish, ..."""
        if self._topics is None:
            from broker_adapters.topics import TopicBus
            from router.topics import Topics
            from warren.keys import Keys
            from warren.store.topics import TopicStore

            self._topics = Topics(TopicStore(self.redis, self.settings.prefix),
                                  TopicBus(self.settings.amqp, Keys(self.settings.prefix)),
                                  self.registry)
        return self._topics

    def create_topic(self, name: str) -> str:
        return str(self.topics.create(name))

    def delete_topic(self, name: str) -> None:
        self.topics.delete(name)

    def list_topics(self) -> list[str]:
        return list(self.topics.names())

    def subscribe(self, topic: str, function: str, *, filter_policy: str | None = None,
                  raw: bool = False) -> Any:
        """Subscribe a function (NAME[:QUALIFIER]); returns the Subscription (its id, arn)."""
        return self.topics.subscribe(topic, function, filter_policy=filter_policy, raw=raw)

    def unsubscribe(self, topic: str, subscription_id: str) -> None:
        self.topics.unsubscribe(topic, subscription_id)

    def publish(self, topic: str, message: str, *, subject: str | None = None,
                attributes: Mapping[str, Any] | None = None) -> str:
        """Publish; returns the MessageId once RabbitMQ confirmed the message. Attribute
        values: str (String), a number (Number), a list of str (String.Array), or
        {"Type": ..., "Value": ...}."""
        return str(self.topics.publish(topic, message, subject=subject, attributes=attributes))

    # ---- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        if self._invoker is not None:
            self._invoker.close()
        self._invoker = None
        if self._topics is not None:
            self._topics.close()
        self._topics = None
        self.redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
