"""Devices and processes: the device string checked before any work, the process group set up from
torchrun's environment, and starting torchrun for the single-machine case
(`composer train --devices N`). Multi-node runs call torchrun directly.

The launcher owns its workers: torchrun runs in its own process group and receives every
SIGTERM/SIGINT/SIGHUP the launcher gets; torchrun dies with the launcher and the workers with
torchrun (PR_SET_PDEATHSIG on Linux), so no worker outlives a `kill -9` of `composer`.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from ..blueprint import BlueprintError, Problem
from ..errors import where

ERRORS_ENV = "COMPOSER_WORKER_ERRORS"  # a folder where a failing worker leaves its message
LAUNCHED_ENV = "COMPOSER_LAUNCHED"  # set by `--devices N` for its workers
MAX_PROCESSES = 64  # per machine, whatever the device count says


class DeviceError(BlueprintError):
    subject = "with the device"


class EnvironmentProblem(DeviceError):
    subject = "with the environment"


def _problem(message: str, hint: Optional[str] = None) -> DeviceError:
    return DeviceError(Problem(message, (), where(), hint=hint))


def _environment_problem(message: str, hint: Optional[str] = None) -> DeviceError:
    return EnvironmentProblem(Problem(message, (), "<environment>", hint=hint))


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


_DEVICE = re.compile(r"(cpu|cuda|gpu|mps)(?::(\d{1,4}))?")


def resolve_device(device: Optional[str]) -> torch.device:
    """The torch device a `--device` string names, refused (DeviceError) unless this machine has it.
    `gpu` means `cuda`; default: the first GPU when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str):
        raise _problem(f"`--device`: expected a device name, not {type(device).__name__}")
    text = device.strip().lower()
    m = _DEVICE.fullmatch(text)
    if m is None:
        shown = device if len(device) <= 40 else device[:37] + "..."
        raise _problem(f"`--device {shown}`: not a device composer trains on", "use `cpu`, `cuda`, `cuda:N` or `mps`")
    kind, index = m.group(1), m.group(2)
    if kind == "cpu":
        if index not in (None, "0"):
            raise _problem(f"`--device {device}`: the CPU has no index", "use `cpu`; `--devices N` starts N CPU processes")
        return torch.device("cpu")
    if kind == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise _problem(f"`--device {device}`: no Apple GPU (MPS) is usable here", "use `--device cpu`")
        return torch.device("mps")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        built = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise _problem(f"`--device {device}`: {built}", "use `--device cpu`")
    i = int(index) if index is not None else 0
    if i >= count:
        raise _problem(f"`--device {device}`: this machine has {count} GPU(s), numbered 0 to {count - 1}")
    return torch.device("cuda", i)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; a container's CPU set)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def check_processes(n: int, device: torch.device) -> bool:
    """`--devices N`: at most the usable GPUs (GPU runs) or cores (CPU runs), checked before any start."""
    if not isinstance(n, int) or n < 1:
        raise _problem(f"`--devices {n}`: expected a whole number of at least 1")
    if device.type == "cuda":
        have, what, hint = torch.cuda.device_count(), "GPU(s)", "use `--device cpu` for CPU processes"
    else:
        have, what, hint = usable_cores(), "usable CPU core(s)", "one process per core at most"
    have = min(have, MAX_PROCESSES)
    if n > have:
        raise _problem(f"`--devices {n}`: this machine has {have} {what}", hint)
    return True


def environment() -> tuple[int, int, int]:
    """(world, rank, local rank) from torchrun's variables; stray or broken ones are refused."""
    names = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
    values = []
    for name, default in zip(names, ("1", "0", "0")):
        text = os.environ.get(name, default)
        if not (text.isascii() and text.isdecimal()) or len(text) > 6:
            raise _environment_problem(f"{name}={text[:20]!r} is not a process number",
                           "torchrun sets it; unset it to train in one process")
        values.append(int(text))
    world, rank, local = values
    if world > 1 and not (os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")):
        raise _environment_problem(f"WORLD_SIZE={world} is set but this process was not started by torchrun (no MASTER_ADDR/MASTER_PORT)",
                       "unset WORLD_SIZE and RANK, or start N processes with `--devices N`")
    if world < 1 or rank >= world or local >= world:
        raise _environment_problem(f"RANK={rank} / LOCAL_RANK={local} do not fit WORLD_SIZE={world}",
                       "torchrun sets these; unset them to train in one process")
    return world, rank, local


def setup(device: Optional[str] = None) -> Dist:
    """Check `device` and join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK),
    if any: NCCL on GPUs, gloo on CPUs. Without torchrun: one process on `device`."""
    world, rank, local = environment()
    want = resolve_device(device)
    if world > 1 and os.environ.get(LAUNCHED_ENV):
        die_with_parent(signal.SIGKILL)
    if want.type == "cuda":
        if world > 1 and local >= torch.cuda.device_count():
            raise _problem(f"process {local} on this machine has no GPU of its own ({torch.cuda.device_count()} visible)")
        want = torch.device("cuda", local if world > 1 else (want.index or 0))
        torch.cuda.set_device(want)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if want.type == "cuda" else "gloo")
    return Dist(rank, world, local, want)


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(d: Dist, values: list[float]) -> list[float]:
    """Sum numbers over all processes (metrics), in float64."""
    if not d.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=d.device if d.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


# --- CPU threads ---------------------------------------------------------------------------------

def busy_cores(samples: int = 5) -> int:
    """Cores other work keeps busy right now: the kernel's count of runnable threads (procs_running
    in /proc/stat, the median of a few looks 20 ms apart), less this process. 0 where unknown."""
    import statistics
    import time
    counts = []
    for i in range(samples):
        try:
            with open("/proc/stat", "rb") as fh:
                line = next((l for l in fh if l.startswith(b"procs_running")), b"procs_running 1")
            counts.append(int(line.split()[1]))
        except (OSError, ValueError, IndexError):
            return 0
        if i < samples - 1:
            time.sleep(0.02)
    return max(0, int(statistics.median(counts)) - 1)


def free_cores() -> tuple[int, int]:
    """(usable cores, the ones not busy with other work, at least 1). torch's threads meet at a
    barrier after every operation, so a thread on a busy core stalls all of them: on a loaded
    machine fewer threads train faster (bench/threads_bench.py)."""
    usable = usable_cores()
    return usable, max(1, usable - busy_cores())


def cpu_split(cores: int, processes: int, workers: int) -> tuple[int, int]:
    """(torch threads, decoding workers) per process, so that together they fill the cores without
    oversubscribing them. A worker takes a core only when the process has three or more: decoding
    small images costs less than a compute thread, and on two cores a worker beside two threads
    makes three busy threads (measured in bench/threads_bench.py)."""
    per = max(1, cores // max(1, processes))
    workers = min(workers, max(0, (per - 1) // 2))
    return max(1, per - workers), workers


# --- processes -----------------------------------------------------------------------------------

def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send `sig` to this process when its parent ends (Linux); elsewhere nothing.
    A parent already gone by then (the process was adopted) ends this one at once."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    expected = os.environ.get("COMPOSER_LAUNCHER_PARENT")
    if os.getppid() == 1 or (expected and expected.isdecimal() and os.getppid() != int(expected) and not _alive(int(expected))):
        os.kill(os.getpid(), sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """The command that runs `composer ARGS` in `nproc` processes on this machine (torchrun, its own
    report of a failed worker left out: the worker's message is the one that counts)."""
    return [sys.executable, "-c", "from composer.train.distributed import torchrun_main; torchrun_main()",
            "--standalone", f"--nproc_per_node={nproc}", "-m", "cli", *args]


def torchrun_main() -> None:
    """torchrun, quiet: a failed worker ends it with exit 1 and no stack of its own."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run
    die_with_parent(signal.SIGTERM)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(parse_args(sys.argv[1:]))
    except ChildFailedError:
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # torchrun's own failure (a signal, a rendezvous): one line
        sys.stderr.write(f"error: torchrun: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}\n")
        sys.exit(1)


def launch(nproc: int, args: list[str], threads: int, errors: Path, lock_held: Optional[str] = None) -> int:
    """Run `composer ARGS` under torchrun in `nproc` processes with `threads` torch threads each;
    forward signals to it and wait. Returns its exit code (negative: the signal that ended it)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), LAUNCHED_ENV: "1", ERRORS_ENV: str(errors),
           "COMPOSER_LAUNCHER_PARENT": str(os.getpid())}
    if lock_held:
        env["COMPOSER_RUN_LOCK_HELD"] = lock_held
    env.pop("WORLD_SIZE", None), env.pop("RANK", None), env.pop("LOCAL_RANK", None)
    proc = subprocess.Popen(torchrun_command(nproc, args), env=env, start_new_session=True)
    received: list[int] = []

    def forward(sig, frame):
        received.append(sig)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {s: signal.signal(s, forward) for s in handled}
    try:
        code = proc.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if received:
        return -received[0]
    return code


def worker_errors(errors: Path) -> Optional[str]:
    """The message of the failing worker with the lowest rank, if any left one."""
    files = sorted(errors.glob("rank-*.txt"), key=lambda p: int(p.stem.split("-")[1]) if p.stem.split("-")[1].isdigit() else 0)
    for f in files:
        text = f.read_text(errors="replace").strip()
        if text:
            return text
    return None
