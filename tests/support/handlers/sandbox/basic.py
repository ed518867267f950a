"""Well-behaved handlers: echo, context, environment, init counting, logging."""

import logging
import os
import sys
import time

INIT_COUNT = 0
INIT_COUNT += 1
INIT_PID = os.getpid()
print("init ran", flush=True)


def echo(event, context):
    return event


def hello(event, context):
    print(f"hello {event.get('name', 'world')}")
    return {"greeting": f"hello {event.get('name', 'world')}"}


def noop(event, context):
    return None


def describe(event, context):
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "pid": os.getpid(),
        "init_pid": INIT_PID,
        "init_count": INIT_COUNT,
        "uid": os.getuid(),
        "cwd": os.getcwd(),
    }


def environment(event, context):
    return dict(os.environ)


def open_fds(event, context):
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # the directory listing's own fd, closed by now
    return fds


def limits(event, context):
    import resource

    names = ["RLIMIT_CORE", "RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_NPROC", "RLIMIT_AS"]
    return {n: list(resource.getrlimit(getattr(resource, n))) for n in names}


def write_tmp(event, context):
    folder = os.path.join(os.environ["TMPDIR"], event.get("subdir", ""))
    os.makedirs(folder, exist_ok=True)  # under umask 077: 0700 directories of the sandbox uid
    path = os.path.join(folder, event.get("name", "file.txt"))
    if "data" in event:
        with open(path, "w") as f:
            f.write(event["data"])
    exists = os.path.exists(path)
    st = os.stat(os.environ["TMPDIR"])
    return {
        "path": path,
        "exists": exists,
        "tmpdir": os.environ["TMPDIR"],
        "mode": oct(st.st_mode & 0o777),
        "owner": st.st_uid,
    }


def logs(event, context):
    print("to stdout")
    sys.stderr.write("to stderr\n")
    logging.getLogger().warning("a warning")
    return "ok"


def remaining(event, context):
    time.sleep(event.get("sleep", 0))
    return context.get_remaining_time_in_millis()
