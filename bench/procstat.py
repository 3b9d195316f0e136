"""CPU and memory of a process tree, read from /proc (Linux only).

CPU: ``utime + stime + cutime + cstime`` of every live process in the tree. Counting the
children's ``cutime``/``cstime`` as well means a child that exits during the measuring window
is still counted (its times move into its parent's ``cutime`` when it is reaped), without
double counting the ones still alive.

Memory: ``Rss`` and ``Pss`` from ``/proc/<pid>/smaps_rollup``. PSS splits shared pages (the
ffmpeg binary's text, Python's shared libraries) between the processes that map them, so the
PSS of a tree is what the tree really costs; RSS counts shared pages once per process.

Also what a long run watches for leaks: a process's open descriptors by kind, its threads, its
descendants, and ffmpeg processes anywhere that mention a path (orphans).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    comm: str
    cpu_ticks: int
    """utime + stime + cutime + cstime."""
    own_ticks: int = 0
    """utime + stime (the process itself, without reaped children)."""
    own_sys_ticks: int = 0
    """stime alone (time in the kernel: syscalls such as pipe and socket I/O)."""
    state: str = "?"
    """One letter: ``R`` running, ``S`` sleeping, ``Z`` zombie..."""


def _read_stat(pid: int) -> ProcInfo | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm is in parentheses and may contain spaces or parentheses: split at the last ")"
    lpar, rpar = raw.index("("), raw.rindex(")")
    comm = raw[lpar + 1 : rpar]
    fields = raw[rpar + 2 :].split()
    # fields[0] is state (field 3); utime is field 14 -> index 11
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ProcInfo(
        pid, ppid, comm, utime + stime + cutime + cstime, utime + stime, stime, fields[0]
    )


def all_processes() -> dict[int, ProcInfo]:
    procs: dict[int, ProcInfo] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _read_stat(int(name))
            if info is not None:
                procs[info.pid] = info
    return procs


def tree(root: int, procs: dict[int, ProcInfo] | None = None) -> list[ProcInfo]:
    """``root`` and all its descendants (walking ppid links)."""
    procs = all_processes() if procs is None else procs
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found: list[ProcInfo] = []
    stack = [root]
    while stack:
        pid = stack.pop()
        if (info := procs.get(pid)) is not None:
            found.append(info)
            stack.extend(children.get(pid, ()))
    return found


def trees(roots: list[int]) -> list[ProcInfo]:
    procs = all_processes()
    seen: dict[int, ProcInfo] = {}
    for root in roots:
        for info in tree(root, procs):
            seen[info.pid] = info
    return list(seen.values())


@dataclass(frozen=True)
class CpuSample:
    at: float
    ticks: int
    processes: int
    roots_own_ticks: int = 0
    """utime + stime of the root processes alone (e.g. the Python or Node.js server process,
    without its ffmpeg children)."""
    roots_sys_ticks: int = 0
    """stime of the root processes alone."""


def cpu_sample(roots: list[int]) -> CpuSample:
    members = trees(roots)
    own = sum(p.own_ticks for p in members if p.pid in roots)
    own_sys = sum(p.own_sys_ticks for p in members if p.pid in roots)
    return CpuSample(
        time.monotonic(), sum(p.cpu_ticks for p in members), len(members), own, own_sys
    )


def root_cpu_percent(start: CpuSample, end: CpuSample) -> float:
    """CPU of the root processes alone between two samples, as % of one core."""
    elapsed = end.at - start.at
    if elapsed <= 0:
        return 0.0
    return 100.0 * (end.roots_own_ticks - start.roots_own_ticks) / CLK_TCK / elapsed


def root_sys_cpu_percent(start: CpuSample, end: CpuSample) -> float:
    """Kernel-mode CPU of the root processes alone, as % of one core."""
    elapsed = end.at - start.at
    if elapsed <= 0:
        return 0.0
    return 100.0 * (end.roots_sys_ticks - start.roots_sys_ticks) / CLK_TCK / elapsed


def cpu_percent(start: CpuSample, end: CpuSample) -> float:
    """CPU between two samples as % of one core."""
    elapsed = end.at - start.at
    if elapsed <= 0:
        return 0.0
    return 100.0 * (end.ticks - start.ticks) / CLK_TCK / elapsed


@dataclass(frozen=True)
class MemSample:
    rss_kb: int
    pss_kb: int
    processes: int
    pss_kb_by_command: dict[str, int] = field(default_factory=dict)
    """PSS summed per command name (e.g. ``liverelay`` vs ``ffmpeg-linux-x8``)."""


def _smaps_rollup(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return rss, pss


def own_memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB of ``pid`` alone."""
    return _smaps_rollup(pid)


def mem_sample(roots: list[int]) -> MemSample:
    members = trees(roots)
    rss = pss = 0
    by_command: dict[str, int] = {}
    for p in members:
        r, s = _smaps_rollup(p.pid)
        rss += r
        pss += s
        by_command[p.comm] = by_command.get(p.comm, 0) + s
    return MemSample(rss, pss, len(members), by_command)


@dataclass(frozen=True)
class SystemCpu:
    at: float
    busy: int
    total: int


def system_cpu() -> SystemCpu:
    """Whole-machine jiffies from /proc/stat (busy = total - idle - iowait)."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    total = sum(parts[:8])
    idle = parts[3] + parts[4]
    return SystemCpu(time.monotonic(), total - idle, total)


def system_busy_percent(start: SystemCpu, end: SystemCpu) -> float:
    """Machine busy % of ALL cores (100 = every core saturated)."""
    total = end.total - start.total
    return 100.0 * (end.busy - start.busy) / total if total > 0 else 0.0


def machine() -> dict[str, object]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "mem_total_mb": round(mem_kb / 1024),
        "kernel": os.uname().release,
    }


def descendants(root: int) -> list[ProcInfo]:
    """Every process below ``root`` (not ``root`` itself)."""
    return [p for p in tree(root) if p.pid != root]


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []


def ffmpeg_mentioning(path: Path) -> list[dict[str, Any]]:
    """Every ffmpeg process on the machine whose command line mentions ``path``."""
    needle = str(path)
    found = []
    for p in all_processes().values():
        argv = _cmdline(p.pid)
        if argv and "ffmpeg" in os.path.basename(argv[0]) and any(needle in a for a in argv):
            found.append({"pid": p.pid, "ppid": p.ppid, "state": p.state})
    return found


def _socket_ports(pid: int) -> dict[str, int]:
    """Socket inode -> local TCP port, from the network namespace of ``pid``."""
    ports: dict[str, int] = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) > 9:
                        ports[parts[9]] = int(parts[1].rsplit(":", 1)[1], 16)
        except OSError:
            continue
    return ports


def open_fds(pid: int, ports: dict[int, str] | None = None) -> dict[str, int]:
    """Open file descriptors of ``pid``, by kind: pipe, anon, socket (split by local port with
    ``ports``: port -> name, e.g. ``http`` and ``rtmp``), database (the SQLite file, -wal,
    -shm) and other files."""
    kinds = {"total": 0, "pipe": 0, "anon": 0, "socket": 0, "database": 0, "file": 0}
    for name in (ports or {}).values():
        kinds[f"socket_{name}"] = 0
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return kinds
    inode_ports = _socket_ports(pid) if ports else {}
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        kinds["total"] += 1
        if target.startswith("socket:"):
            kinds["socket"] += 1
            port = inode_ports.get(target[8:-1])
            if ports and port in ports:
                kinds[f"socket_{ports[port]}"] += 1
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("anon_inode:"):
            kinds["anon"] += 1
        elif ".db" in os.path.basename(target):
            kinds["database"] += 1
        else:
            kinds["file"] += 1
    return kinds


def threads(pid: int) -> int | None:
    """Threads of ``pid`` (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_delay_seconds(pid: int) -> float:
    """Seconds the main thread of ``pid`` has spent runnable but waiting for a CPU
    (``/proc/<pid>/schedstat``, second field): what an event loop's lag owes to the machine
    rather than to its own work. 0 where the kernel keeps no schedstats."""
    try:
        fields = Path(f"/proc/{pid}/schedstat").read_text().split()
    except OSError:
        return 0.0
    return int(fields[1]) / 1e9 if len(fields) > 1 else 0.0


def pin_tree(root: int, cpus: set[int]) -> int:
    """Restrict every thread of every process in ``root``'s tree to ``cpus``
    (``sched_setaffinity`` is per thread; threads and processes started later inherit it from
    the thread that starts them). Returns how many threads were pinned."""
    pinned = 0
    for proc in tree(root):
        try:
            tasks = os.listdir(f"/proc/{proc.pid}/task")
        except OSError:
            continue  # exited meanwhile
        for task in tasks:
            try:
                os.sched_setaffinity(int(task), cpus)
            except OSError:
                continue
            pinned += 1
    return pinned


def split_cpus() -> tuple[set[int], set[int]]:
    """Two disjoint CPU sets out of the ones this process may run on: the first CPU for a
    server, the rest for its load generators."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        raise RuntimeError(f"pinning needs two CPUs, this process may use {allowed}")
    return {allowed[0]}, set(allowed[1:])
