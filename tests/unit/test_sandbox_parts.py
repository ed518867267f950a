"""The sandbox's small parts on their own: framing, log cap, uid leases, cgroup detection."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from sandbox import protocol
from sandbox.cgroup import Cgroup, CgroupParent
from sandbox.logbuffer import LogBuffer
from sandbox.uidpool import UidPool

# -- framing --------------------------------------------------------------------------------------


def test_frames_round_trip_and_arrive_whole_from_any_split():
    request = protocol.pack_request("req-1", 1234.5, b'{"a": 1}')
    response = protocol.pack_response(False, 1.25, 4096, "ValueError", b'{"errorType": "x"}')
    reader = protocol.FrameReader()
    stream = request + response
    frames = []
    for i in range(0, len(stream), 3):  # three bytes at a time
        reader.feed(stream[i : i + 3])
        while (frame := reader.frame()) is not None:
            frames.append(frame)
    assert protocol.unpack_request(frames[0]) == ("req-1", 1234.5, b'{"a": 1}', b"")
    assert protocol.unpack_response(frames[1]) == (
        False, 1.25, 4096, "ValueError", b'{"errorType": "x"}'
    )


def test_a_request_with_a_client_context_carries_it_before_the_payload():
    frame = protocol.pack_request("req-2", 9.5, b"[1]", b'{"custom": {"k": "v"}}')
    reader = protocol.FrameReader()
    reader.feed(frame)
    assert protocol.unpack_request(reader.frame() or b"") == (
        "req-2", 9.5, b"[1]", b'{"custom": {"k": "v"}}'
    )



def test_blocking_frame_reads_keep_what_follows_a_frame_and_read_big_ones_whole():
    small = protocol.pack_request("req-1", 1.0, b"{}")
    big = protocol.pack_request("req-2", 2.0, b'"' + b"x" * (3 * protocol.READ_SIZE) + b'"')
    parent, child = socket.socketpair()
    reader = protocol.FrameReader()
    assert reader.missing() == protocol.LENGTH.size
    try:
        parent.sendall(small + small[:5])  # a whole frame and the start of the next
        assert protocol.recv_frame(child, reader) == small[protocol.LENGTH.size :]
        assert reader.missing() == len(small) - 5
        sender = threading.Thread(target=parent.sendall, args=(small[5:] + big,))
        sender.start()
        assert protocol.recv_frame(child, reader) == small[protocol.LENGTH.size :]
        assert protocol.unpack_request(protocol.recv_frame(child, reader) or b"")[0] == "req-2"
        sender.join()
        parent.sendall(small[:7])
        parent.close()  # end of stream mid-frame: no frame, not a hang
        assert protocol.recv_frame(child, reader) is None
    finally:
        parent.close()
        child.close()

def test_ready_frame_carries_the_protocol_version_and_the_init_error():
    ok = protocol.pack_ready(3.5, None)[protocol.LENGTH.size :]
    failed = protocol.pack_ready(1.0, b'{"errorType": "Runtime.HandlerNotFound"}')
    assert protocol.unpack_ready(ok) == (protocol.VERSION, 3.5, None)
    assert protocol.unpack_ready(failed[protocol.LENGTH.size :])[2] == (
        b'{"errorType": "Runtime.HandlerNotFound"}'
    )


# -- log cap ------------------------------------------------------------------------------------


def test_log_buffer_keeps_head_and_tail_and_counts_what_it_dropped():
    logs = LogBuffer(cap=20)
    logs.feed(b"0123456789")
    logs.feed(b"abcdefghij" * 10)
    logs.feed(b"TAIL-END!!")
    text = logs.text()
    assert text.startswith("0123456789")
    assert text.endswith("TAIL-END!!")
    assert logs.dropped == 100
    assert "100 bytes of output dropped" in text


def test_log_buffer_under_its_cap_is_verbatim():
    logs = LogBuffer(cap=1000)
    logs.feed("héllo\n".encode())
    logs.feed(b"world\n")
    assert logs.text() == "héllo\nworld\n" and logs.dropped == 0


# -- uid leases ---------------------------------------------------------------------------------


def test_uid_leases_are_exclusive_across_pools_until_released(tmp_path):
    one = UidPool(base=900_000, size=3, lock_dir=str(tmp_path))
    two = UidPool(base=900_000, size=3, lock_dir=str(tmp_path))  # as another worker would
    leases = [one.acquire(), two.acquire(), one.acquire()]
    assert len({lease.uid for lease in leases}) == 3
    with pytest.raises(OSError, match="in use"):
        two.acquire()
    leases[1].release()
    again = two.acquire()
    assert again.uid == leases[1].uid
    for lease in (*leases, again):
        lease.release()


# -- cgroup detection and the v2 layout (a fake tree: this machine's v2 has no controllers) ---


def _fake_v2(root, delegated: str) -> None:
    group = root / "unified" / "user.slice" / "worker"
    group.mkdir(parents=True)
    (group / "cgroup.subtree_control").write_text(delegated)


def test_cgroup_v2_is_chosen_when_the_callers_group_delegates_memory_and_pids(tmp_path):
    _fake_v2(tmp_path, "cpu memory pids\n")
    parent = CgroupParent.detect(str(tmp_path), "0::/user.slice/worker\n")
    assert parent == CgroupParent(2, *[str(tmp_path / "unified/user.slice/worker")] * 2)


def test_cgroup_v1_is_the_fallback_when_v2_delegates_nothing(tmp_path):
    _fake_v2(tmp_path, "")
    (tmp_path / "memory" / "a").mkdir(parents=True)
    (tmp_path / "pids").mkdir()
    text = "4:memory:/a\n8:pids:/\n0::/user.slice/worker\n"
    parent = CgroupParent.detect(str(tmp_path), text)
    assert parent == CgroupParent(1, str(tmp_path / "memory/a"), str(tmp_path / "pids"))


def test_no_cgroup_when_nothing_is_usable(tmp_path):
    _fake_v2(tmp_path, "")
    assert CgroupParent.detect(str(tmp_path), "0::/user.slice/worker\n") is None


def _undelegated_v2(root, procs: str = "123\n456\n"):
    """A container's view of v2: controllers offered, none enabled, the worker's processes in."""
    group = root / "unified" / "kubepods" / "pod1"
    group.mkdir(parents=True)
    (group / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma\n")
    (group / "cgroup.subtree_control").write_text("")
    (group / "cgroup.type").write_text("domain\n")
    (group / "cgroup.procs").write_text(procs)
    return group


def test_v2_moves_the_groups_processes_into_a_leaf_then_enables_memory_and_pids(tmp_path):
    group = _undelegated_v2(tmp_path)
    parent = CgroupParent.detect(str(tmp_path), "0::/kubepods/pod1\n")
    assert parent == CgroupParent(2, str(group), str(group))
    # Sandbox groups are the leaf's siblings; the leaf holds what the group held.
    assert (group / "warren-main" / "cgroup.procs").read_text() in ("123", "456")
    assert (group / "cgroup.subtree_control").read_text() == "+memory +pids"
    sandbox_group = parent.create(64 * 1024 * 1024, 100)
    assert os.path.dirname(sandbox_group.memory_dir) == str(group)
    assert (group / os.path.basename(sandbox_group.memory_dir) / "pids.max").read_text() == "100"
    # The sweep of stale sandbox groups leaves the leaf alone.
    parent.sweep_stale()
    assert (group / "warren-main").is_dir()


def test_v2_a_caller_already_in_the_leaf_makes_groups_beside_it(tmp_path):
    group = _undelegated_v2(tmp_path, procs="")
    (group / "cgroup.subtree_control").write_text("memory pids\n")
    (group / "warren-main").mkdir()
    (group / "warren-main" / "cgroup.subtree_control").write_text("")
    parent = CgroupParent.detect(str(tmp_path), "0::/kubepods/pod1/warren-main\n")
    assert parent == CgroupParent(2, str(group), str(group))


def test_v2_without_the_controllers_offered_nothing_is_moved_and_v1_is_used(tmp_path):
    group = _undelegated_v2(tmp_path)
    (group / "cgroup.controllers").write_text("cpu io\n")
    (tmp_path / "memory" / "a").mkdir(parents=True)
    (tmp_path / "pids").mkdir()
    text = "4:memory:/a\n8:pids:/\n0::/kubepods/pod1\n"
    parent = CgroupParent.detect(str(tmp_path), text)
    assert parent is not None and parent.version == 1
    assert not (group / "warren-main").exists()
    assert (group / "cgroup.subtree_control").read_text() == ""


def test_v2_that_refuses_delegation_falls_back(tmp_path):
    group = _undelegated_v2(tmp_path)
    (group / "cgroup.subtree_control").unlink()
    (group / "cgroup.subtree_control").mkdir()  # any write fails, as EBUSY would
    assert CgroupParent.detect(str(tmp_path), "0::/kubepods/pod1\n") is None


def test_v2_root_group_is_exempt_so_nothing_is_moved(tmp_path):
    root = tmp_path / "unified"
    root.mkdir()
    (root / "cgroup.controllers").write_text("memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    (root / "cgroup.procs").write_text("1\n")  # no cgroup.type: the hierarchy's root
    parent = CgroupParent.detect(str(tmp_path), "0::/\n")
    assert parent == CgroupParent(2, str(root), str(root))
    assert not (root / "warren-main").exists()


def test_this_machines_real_hierarchy_is_not_rearranged():
    before = set(os.listdir("/sys/fs/cgroup/unified")) if os.path.isdir(
        "/sys/fs/cgroup/unified"
    ) else set()
    CgroupParent.detect()
    after = set(os.listdir("/sys/fs/cgroup/unified")) if before else set()
    assert "warren-main" not in after - before


def test_v2_group_files_limits_peak_and_oom_count(tmp_path):
    _fake_v2(tmp_path, "memory pids")
    parent = CgroupParent.detect(str(tmp_path), "0::/user.slice/worker\n")
    group = parent.create(128 * 1024 * 1024, 1024)

    def read(name: str) -> str:
        with open(os.path.join(group.memory_dir, name)) as f:
            return f.read()

    assert read("memory.max") == str(128 * 1024 * 1024)
    assert read("memory.swap.max") == "0"
    assert read("pids.max") == "1024"
    with open(os.path.join(group.memory_dir, "memory.peak"), "w") as f:
        f.write("52428800\n")
    with open(os.path.join(group.memory_dir, "memory.events"), "w") as f:
        f.write("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert group.peak_bytes() == 52428800
    assert group.oom_killed()
    assert group.procs_files == [os.path.join(group.memory_dir, "cgroup.procs")]
    group.remove()


def test_stale_groups_of_dead_creators_are_swept_and_live_ones_kept(tmp_path):
    (tmp_path / "memory").mkdir()
    (tmp_path / "pids").mkdir()
    parent = CgroupParent(1, str(tmp_path / "memory"), str(tmp_path / "pids"))
    dead_pid = 4_000_000  # above pid_max: never a live process
    for d in ("memory", "pids"):
        (tmp_path / d / f"warren-sbx-{dead_pid}-abc").mkdir()
        (tmp_path / d / f"warren-sbx-{os.getpid()}-def").mkdir()
        (tmp_path / d / "someone-else").mkdir()
    assert parent.sweep_stale() == 2
    assert sorted(os.listdir(tmp_path / "memory")) == [
        "someone-else", f"warren-sbx-{os.getpid()}-def"
    ]


def test_cgroup_object_round_trips_through_its_dict():
    group = Cgroup(1, "/sys/fs/cgroup/memory/x", "/sys/fs/cgroup/pids/x")
    assert Cgroup(**group.as_dict()).procs_files == group.procs_files
