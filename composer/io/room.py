"""How much memory this process may still allocate: the least of free RAM, the room left under
its cgroup's memory limit, and its own address-space and data-segment limits (rlimit).

Free RAM alone misleads in a container (the cgroup limit is far below the host's RAM) and under
`ulimit -v`. Every consumer asks here: the build guard (composer.network.guard.check_fits_in_memory), the
checkpoint reader, export's checks, and `--batch auto` (`device_room`: on a GPU, its free memory;
elsewhere, this process's room), so they all see the same figure.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import resource
except ImportError:  # not on every platform
    resource = None  # type: ignore[assignment]

_UNLIMITED = 1 << 62


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, ValueError):
        return None
    if text == "max" or not text.isdigit():
        return None
    value = int(text)
    return value if value < _UNLIMITED else None


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2, else v1), or None without one."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        _, controllers, rel = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        rel = rel.lstrip("/")
        if controllers == "":  # cgroup v2: every ancestor's memory.max bounds this one
            base = Path("/sys/fs/cgroup")
            parts = Path(rel).parts if rel else ()
            for depth in range(len(parts), -1, -1):
                group = base.joinpath(*parts[:depth])
                limit = _read_int(group / "memory.max")
                if limit is not None:
                    used = _read_int(group / "memory.current") or 0
                    rooms.append(limit - used)
        elif "memory" in controllers.split(","):  # cgroup v1
            for group in (Path("/sys/fs/cgroup/memory") / rel, Path("/sys/fs/cgroup/memory")):
                limit = _read_int(group / "memory.limit_in_bytes")
                if limit is not None:
                    used = _read_int(group / "memory.usage_in_bytes") or 0
                    rooms.append(limit - used)
                    break
    return min(rooms) if rooms else None


def _status_bytes(field: str) -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def free_memory() -> int:
    """Bytes of physical memory not in use on this machine."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return _UNLIMITED


def memory_room() -> tuple[int, str]:
    """(bytes this process may still allocate, what sets that figure)."""
    candidates = [(free_memory(), "free memory")]
    cgroup = _cgroup_room()
    if cgroup is not None:
        candidates.append((cgroup, "the room left under this process's cgroup memory limit"))
    if resource is not None:
        for limit, used_field, name in ((resource.RLIMIT_AS, "VmSize", "RLIMIT_AS"),
                                        (resource.RLIMIT_DATA, "VmData", "RLIMIT_DATA")):
            soft, _ = resource.getrlimit(limit)
            if soft != resource.RLIM_INFINITY and soft < _UNLIMITED:
                candidates.append((soft - _status_bytes(used_field), f"the room left under this process's {name} limit"))
    room, why = min(candidates)
    return max(0, room), why


def device_room(device) -> tuple[int, str]:
    """(bytes a tensor on `device` may still take, what sets that figure): a CUDA device's free
    memory, or this process's room (`memory_room`) for the CPU and anything else."""
    if getattr(device, "type", device) == "cuda":
        import torch

        return torch.cuda.mem_get_info(device)[0], f"free memory on {device}"
    return memory_room()
