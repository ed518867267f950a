"""Fills /tmp until the file system refuses; reports how far it got and why it stopped."""

import os


def handler(event, context):
    st = os.statvfs("/tmp")
    wrote, error = 0, None
    chunk = b"x" * (1 << 20)
    try:
        with open(os.path.join("/tmp", event.get("name", "fill")), "wb") as f:
            while wrote < event.get("max_mb", 1 << 20):
                f.write(chunk)
                wrote += 1
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        error = exc.errno
    return {"wrote_mb": wrote, "errno": error, "size_mb": st.f_blocks * st.f_frsize >> 20,
            "listing": sorted(os.listdir("/tmp"))}


def remove(event, context):
    os.unlink(os.path.join("/tmp", event.get("name", "fill")))
    return sorted(os.listdir("/tmp"))
