"""A fleet on a 3-node RabbitMQ cluster with quorum queues, losing its work queue's leader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from faults.fleet import FaultFleet, Load, describe, results_dir, wait_all_done
from faults.history import save
from faults.nodes import RabbitCluster, RedisNode, rabbit_available

SLOTS = 2
CHUNK = 4


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    if not rabbit_available():
        pytest.skip("rabbitmq-server is needed for the cluster test")
    nodes = RabbitCluster(3)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.destroy()


class ClusterFleet(FaultFleet):
    """Asks whichever node still runs (the test stops one)."""

    def __init__(self, cluster: RabbitCluster, *args: object, **env: str) -> None:
        super().__init__(cluster.nodes[0], *args, **env)  # type: ignore[arg-type]
        self.cluster = cluster
        self.env["WARREN_AMQP_URL"] = cluster.urls

    def consumers(self, queue: str) -> int:
        return self.cluster.running().consumers(queue)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_fleet_on_three_brokers_loses_its_queue_leader_and_nothing(
    cluster: RabbitCluster, healthy_redis: RedisNode, unique: str, tmp_path: Path
) -> None:
    # Given a fleet connected to all three brokers of a cluster (WARREN_AMQP_URL lists them)
    fleet = ClusterFleet(cluster, healthy_redis.url, f"c{unique}", tmp_path,
                         WARREN_ROUTER_CHUNK=str(CHUNK))
    fleet.node = cluster.running()
    stopped = None
    try:
        fleet.settings = type(fleet.settings).from_environ(fleet.env)
        fleet.client.close()
        fleet.client = type(fleet.client).from_settings(fleet.settings)
        done, history = fleet.recording_function("rec")
        history.scenario = "cluster_leader_stopped"
        fleet.worker(slots=SLOTS)
        fleet.router()
        load = Load(fleet, "rec", history, total=600).start()
        fleet.wait_for(lambda: len(fleet.completions(done)) >= 40, timeout=90, what="a start")
        # When the node leading the work queue stops mid-run
        stopped = cluster.leader_of(fleet.keys.work_queue("default"))
        history.mark_fault()
        stopped.stop_app()
        fleet.node = cluster.running()
        history.mark_back()
        load.join(timeout=180)
        # Then another node leads it, the fleet fails over, and nothing is lost
        wait_all_done(fleet, done, history, timeout=180)
        verdict = history.check(fleet.completions(done), in_flight=SLOTS * CHUNK)
        verdict.notes.append(f"stopped {stopped.name}, the work queue's leader")
        save(verdict, results_dir())
        assert verdict.accepted == 600, describe(verdict, fleet)
        assert verdict.lost == 0, describe(verdict, fleet)
        assert verdict.max_runs <= 2, describe(verdict, fleet)
        assert all(p.poll() is None for p in fleet.procs)
    finally:
        fleet.close()
        if stopped is not None:
            stopped.start_app()
