"""Everything that talks to the operating system below Python's own abstractions.

* atomic 64-bit loads, stores, compare-and-swap and fences on shared memory, through GCC's
  ``libatomic`` (ctypes): correct on weakly ordered CPUs (ARM), not only on x86;
* futex wait/wake on a 32-bit word in shared memory: readers in any process sleep without
  spinning and a publisher wakes all of them with one system call;
* shared-memory segments as files in ``/dev/shm`` (what ``shm_open`` does on Linux), opened
  with ``os.open`` rather than ``multiprocessing.shared_memory`` so that no resource tracker can
  unlink a stream when a reader exits (CPython issue 82300), created ``0600`` and fully
  allocated up front so a full ``/dev/shm`` fails at creation, not later with SIGBUS; a segment
  must fit both in ``/dev/shm`` and in the available memory (tmpfs pages are RAM);
* process identity (pid + start time) to tell a live publisher or reader from a dead one.

Linux is the supported platform; every OS-specific detail lives in this module.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import mmap
import os
import platform
import stat
import sys

from .errors import PlatformError, SharedMemoryFull

__all__ = [
    "SHM_DIR",
    "Segment",
    "SegmentRefused",
    "Words",
    "futex_wait",
    "futex_wake",
    "list_segments",
    "is_process",
    "cgroup_memory",
    "memory_info",
    "process_alive",
    "process_command",
    "process_start_time",
    "process_uid",
    "shm_free_bytes",
    "space_shortage",
    "unlink_if_same",
    "unlink_segment",
]

SHM_DIR = "/dev/shm"

RELAXED, ACQUIRE, RELEASE, SEQ_CST = 0, 2, 3, 5

if not sys.platform.startswith("linux"):  # pragma: no cover - Linux is the supported platform
    raise PlatformError(f"framebus needs Linux (futexes and /dev/shm); this is {sys.platform}")


def _load_libatomic() -> ctypes.CDLL:
    for candidate in (ctypes.util.find_library("atomic"), "libatomic.so.1"):
        if candidate:
            try:
                return ctypes.CDLL(candidate)
            except OSError:
                continue
    raise PlatformError(
        "libatomic.so.1 not found: install it (Debian/Ubuntu: apt-get install libatomic1)"
    )


_atomic = _load_libatomic()
_load8 = getattr(_atomic, "__atomic_load_8")
_load8.argtypes, _load8.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_uint64
_store8 = getattr(_atomic, "__atomic_store_8")
_store8.argtypes, _store8.restype = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int], None
_cas8 = getattr(_atomic, "__atomic_compare_exchange_8")
_cas8.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.c_int]
_cas8.restype = ctypes.c_bool
_load4 = getattr(_atomic, "__atomic_load_4")
_load4.argtypes, _load4.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_uint32
_add4 = getattr(_atomic, "__atomic_fetch_add_4")
_add4.argtypes, _add4.restype = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int], ctypes.c_uint32
_fence = _atomic.atomic_thread_fence
_fence.argtypes, _fence.restype = [ctypes.c_int], None
_lock_free = getattr(_atomic, "__atomic_is_lock_free")
_lock_free.argtypes, _lock_free.restype = [ctypes.c_size_t, ctypes.c_void_p], ctypes.c_bool
if not _lock_free(8, None):  # pragma: no cover - 32-bit CPUs without 8-byte atomics
    # libatomic would fall back to a lock private to each process: no atomicity across them
    raise PlatformError(f"this CPU ({platform.machine()}) has no lock-free 64-bit atomics")


class Words:
    """Atomic access to the 64-bit words of a mapped segment, by byte offset.

    Loads are acquire, stores release, read-modify-writes and :meth:`fence` sequentially
    consistent, unless a method's name says otherwise.
    """

    __slots__ = ("base",)

    def __init__(self, base: int) -> None:
        self.base = base

    def load(self, offset: int) -> int:
        return int(_load8(self.base + offset, ACQUIRE))

    def load_sc(self, offset: int) -> int:
        return int(_load8(self.base + offset, SEQ_CST))

    def store(self, offset: int, value: int) -> None:
        _store8(self.base + offset, value, RELEASE)

    def store_sc(self, offset: int, value: int) -> None:
        _store8(self.base + offset, value, SEQ_CST)

    def cas(self, offset: int, expected: int, desired: int) -> bool:
        exp = ctypes.c_uint64(expected)
        return bool(_cas8(self.base + offset, ctypes.byref(exp), desired, SEQ_CST, SEQ_CST))

    def load32(self, offset: int) -> int:
        return int(_load4(self.base + offset, SEQ_CST))

    def bump32(self, offset: int) -> None:
        _add4(self.base + offset, 1, SEQ_CST)

    @staticmethod
    def fence() -> None:
        _fence(SEQ_CST)


# --- futex -----------------------------------------------------------------------------------

_SYS_FUTEX = {
    "x86_64": 202,
    "aarch64": 98,
    "arm64": 98,
    "riscv64": 98,
    "armv7l": 240,
    "armv6l": 240,
    "i686": 240,
    "i386": 240,
    "ppc64le": 221,
}.get(platform.machine())
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1
_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
if _SYS_FUTEX is None:  # pragma: no cover
    raise PlatformError(f"futex system call number unknown for {platform.machine()}")
_NR_FUTEX: int = _SYS_FUTEX


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def futex_wait(address: int, expected: int, timeout: float) -> None:
    """Sleep while the 32-bit word at ``address`` equals ``expected``, at most ``timeout`` s.

    Returns on a wake-up, a changed word, a signal or the timeout: callers re-check their
    condition in a loop. The calling thread releases the GIL while it sleeps.
    """
    timeout = max(0.0, timeout)
    ts = _Timespec(int(timeout), int((timeout - int(timeout)) * 1e9))
    _syscall(
        ctypes.c_long(_NR_FUTEX),
        ctypes.c_void_p(address),
        ctypes.c_long(_FUTEX_WAIT),
        ctypes.c_long(expected),
        ctypes.byref(ts),
        ctypes.c_void_p(None),
        ctypes.c_long(0),
    )


def futex_wake(address: int) -> None:
    """Wake every thread of every process sleeping on the word at ``address``."""
    _syscall(
        ctypes.c_long(_NR_FUTEX),
        ctypes.c_void_p(address),
        ctypes.c_long(_FUTEX_WAKE),
        ctypes.c_long(0x7FFFFFFF),
        ctypes.c_void_p(None),
        ctypes.c_void_p(None),
        ctypes.c_long(0),
    )


# --- shared-memory segments --------------------------------------------------------------------


def shm_free_bytes() -> int:
    st = os.statvfs(SHM_DIR)
    return st.f_bavail * st.f_frsize


def memory_info() -> tuple[int, int] | None:
    """(MemAvailable, MemTotal) in bytes from ``/proc/meminfo``; None if it cannot be read."""
    found: dict[bytes, int] = {}
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                key, _, rest = line.partition(b":")
                if key in (b"MemAvailable", b"MemTotal"):
                    found[key] = int(rest.split()[0]) * 1024  # "kB" is KiB
    except (OSError, ValueError, IndexError):
        return None
    if len(found) != 2:
        return None
    return found[b"MemAvailable"], found[b"MemTotal"]


_CGROUP_V1_MEMORY = "/sys/fs/cgroup/memory"
_CGROUP_V2_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")  # unified; hybrid hosts
_UNLIMITED = 2**62  # cgroup v1 writes "no limit" as a page-rounded 2**63 - 1


def cgroup_memory() -> tuple[int, int] | None:
    """(bytes this process's memory cgroup still allows, its limit): the tightest of its
    cgroup and the cgroups above it, v2 or v1, with the page cache it can reclaim
    (``inactive_file``) counted as free; None when no cgroup limits memory or it cannot be read.

    A container's ``--memory`` limit is not in ``/proc/meminfo``: a segment that fits in
    MemAvailable can still exceed it, and the pages of ``/dev/shm`` are charged to the cgroup
    of the process that allocates them, so the kernel refuses or kills inside the container.
    """
    try:
        with open("/proc/self/cgroup", "rb") as f:
            lines = f.read(1 << 16).decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    tightest: tuple[int, int] | None = None
    roots: tuple[str, ...]
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            roots, names = _CGROUP_V2_ROOTS, ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):
            roots = (_CGROUP_V1_MEMORY,)
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        for root in roots:
            for level in _cgroup_levels(root, path):
                found = _cgroup_free(level, *names)
                if found is not None and (tightest is None or found[0] < tightest[0]):
                    tightest = found
    return tightest


def _cgroup_levels(root: str, path: str) -> list[str]:
    """The folders of the cgroup at ``path`` under ``root`` and of each cgroup above it."""
    here = os.path.normpath(os.path.join(root, path.lstrip("/")))
    if not (here == root or here.startswith(root + "/")) or not os.path.isdir(here):
        return []
    levels = [here]
    while here != root:
        here = os.path.dirname(here)
        levels.append(here)
    return levels


def _cgroup_free(
    folder: str, limit_name: str, usage_name: str, cache_key: str
) -> tuple[int, int] | None:
    """(free, limit) of one cgroup folder, or None if it sets no limit (or cannot be read)."""
    try:
        with open(os.path.join(folder, limit_name), "rb") as f:
            raw = f.read(64).strip()
        if raw == b"max":
            return None
        limit = int(raw)
        if limit >= _UNLIMITED:
            return None
        with open(os.path.join(folder, usage_name), "rb") as f:
            usage = int(f.read(64).strip())
        cache = 0
        with open(os.path.join(folder, "memory.stat"), "rb") as f:
            for line in f.read(1 << 16).splitlines():
                key, _, value = line.partition(b" ")
                if key == cache_key.encode():
                    cache = int(value)
                    break
    except (OSError, ValueError):
        return None
    return max(0, limit - usage + min(cache, usage)), limit


_MIB = 2**20
MEMORY_RESERVE_MIN = 64 * _MIB  # memory a new segment always leaves to the rest of the machine


def memory_reserve(total: int) -> int:
    """Memory a new segment must leave available: 1/20 of the RAM, at least 64 MiB."""
    return max(MEMORY_RESERVE_MIN, total // 20)


def space_shortage(
    size: int,
    shm_free: int,
    memory: tuple[int, int] | None,
    cgroup: tuple[int, int] | None = None,
) -> str | None:
    """Why ``size`` more bytes of shared memory would not fit, or None if they do.

    ``shm_free`` is what ``/dev/shm`` has left, ``memory`` (MemAvailable, MemTotal) as from
    :func:`memory_info`, ``cgroup`` (free, limit) as from :func:`cgroup_memory` (None:
    unknown or unlimited, not checked); a cgroup keeps the same reserve of its own limit. A
    tmpfs holds its pages in RAM (there is no disk behind it) and its size is only a cap, often
    as large as the RAM itself: a segment that fits in ``/dev/shm`` but not in the available
    memory makes the kernel swap or start killing processes (the OOM killer), so both must have
    room, and the memory a margin more.
    Swap is not counted: a ring that lives in swap is no use to anyone.
    """
    shm_short = size > shm_free
    have = f"{SHM_DIR} has {shm_free / _MIB:.1f} MiB free"
    mem_short = False
    reserve = 0
    if memory is not None:
        available, total = memory
        reserve = memory_reserve(total)
        mem_short = size + reserve > available
        have += f", MemAvailable {available / _MIB:.1f} MiB"
    if cgroup is not None:
        free, limit = cgroup
        if size + memory_reserve(limit) > free and not mem_short:
            # the container's limit binds: its numbers, not the machine's
            mem_short, reserve = True, memory_reserve(limit)
            have = f"{SHM_DIR} has {shm_free / _MIB:.1f} MiB free"
            have += f", the memory cgroup {free / _MIB:.1f} MiB (limit {limit / _MIB:.0f})"
    need = f"needs {size / _MIB:.1f} MiB; {have}"
    if mem_short:  # (the message must fit in a stream header's 255 bytes)
        return (
            f"{need} ({reserve / _MIB:.0f} MiB of it kept free): shared memory is RAM, more "
            "would make the kernel kill processes; use fewer slots or smaller frames"
        )
    if shm_short:
        return (
            f"{need}; free space in {SHM_DIR}, use fewer slots or smaller frames, or raise "
            "Docker's --shm-size (e.g. --shm-size=1g)"
        )
    return None


def _check_space(size: int) -> None:
    """Raise :class:`SharedMemoryFull` unless a segment of ``size`` bytes fits."""
    why = space_shortage(size, shm_free_bytes(), memory_info(), cgroup_memory())
    if why is not None:
        raise SharedMemoryFull(f"not enough shared memory: {why}")


def _space_error(size: int) -> SharedMemoryFull:
    """The error for a failed allocation (ENOSPC/ENOMEM): the numbers as they are now."""
    free = shm_free_bytes()
    why = space_shortage(size, free, memory_info(), cgroup_memory()) or (
        f"needs {size / _MIB:.1f} MiB, and the kernel refused it ({SHM_DIR} has "
        f"{free / _MIB:.1f} MiB free); use fewer slots or smaller frames, or raise Docker's "
        "--shm-size"
    )
    return SharedMemoryFull(f"not enough shared memory: {why}")


class Segment:
    """One mapped shared-memory segment. The creator owns its name; see :func:`unlink_segment`."""

    def __init__(self, name: str, fd: int, size: int, *, populate: bool = True) -> None:
        self.name = name
        self.size = size
        st = os.fstat(fd)
        self.inode = st.st_ino  # tells this segment from a later one of the same name
        self.uid = st.st_uid
        self.mtime = st.st_mtime
        try:
            flags = mmap.MAP_SHARED
            if populate:  # map every page now, not by a fault on the first frame of each slot
                flags |= getattr(mmap, "MAP_POPULATE", 0)
            self.mm = mmap.mmap(fd, size, flags, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._anchor: ctypes.Array[ctypes.c_char] | None = (ctypes.c_char * size).from_buffer(
            self.mm
        )
        self.address = ctypes.addressof(self._anchor)
        self.words = Words(self.address)

    @classmethod
    def create(cls, name: str, size: int) -> Segment:
        """Create ``name`` with ``size`` bytes, all allocated now. Raises FileExistsError."""
        _check_space(size)  # the kernel would allocate it, but from RAM the machine needs
        fd = os.open(_path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            os.close(fd)
            unlink_segment(name)
            if exc.errno in (errno.ENOSPC, errno.ENOMEM):
                raise _space_error(size) from None
            raise
        try:
            return cls(name, fd, size)
        except OSError as exc:  # mapping it (every page, MAP_POPULATE) failed
            unlink_segment(name)
            if exc.errno == errno.ENOMEM:
                raise _space_error(size) from None
            raise

    @classmethod
    def open(cls, name: str, *, max_size: int | None = None, populate: bool = False) -> Segment:
        """Map an existing segment of this user's. Raises FileNotFoundError if it is missing
        or empty, :class:`SegmentRefused` if it is not a regular file of this user's (a
        symlink, another user's file) or larger than ``max_size``: anyone may write files into
        /dev/shm, so nothing about one is trusted before it is checked."""
        try:
            fd = os.open(_path(name), os.O_RDWR | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SegmentRefused(f"{SHM_DIR}/{name} is a symbolic link") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SegmentRefused(f"{SHM_DIR}/{name} is not a regular file")
            if st.st_uid != os.geteuid():
                raise SegmentRefused(f"{SHM_DIR}/{name} belongs to uid {st.st_uid}, not to you")
            if st.st_size == 0:
                raise FileNotFoundError(errno.ENOENT, "segment not initialised yet", name)
            if max_size is not None and st.st_size > max_size:
                raise SegmentRefused(
                    f"{SHM_DIR}/{name} has {st.st_size} bytes, more than {max_size} expected"
                )
        except BaseException:
            os.close(fd)
            raise
        return cls(name, fd, st.st_size, populate=populate)

    def close(self) -> None:
        """Unmap. If a caller still holds a numpy view, the mapping lives until that view dies."""
        self._anchor = None
        # a live numpy view keeps the mmap object, and so the mapping, alive until it dies
        with contextlib.suppress(BufferError):
            self.mm.close()


class SegmentRefused(OSError):
    """A /dev/shm file that framebus will not map (see :meth:`Segment.open`)."""


def _path(name: str) -> str:
    return os.path.join(SHM_DIR, name)


def unlink_segment(name: str) -> bool:
    """Remove ``name`` from /dev/shm; existing mappings stay valid. False if it was gone."""
    try:
        os.unlink(_path(name))
    except FileNotFoundError:
        return False
    return True


def unlink_if_same(name: str, inode: int) -> bool:
    """Unlink ``name`` only if it is still the segment with ``inode`` (not a successor's)."""
    try:
        if os.stat(_path(name)).st_ino != inode:
            return False
    except FileNotFoundError:
        return False
    return unlink_segment(name)


def list_segments(prefix: str) -> list[str]:
    """This user's regular files in /dev/shm whose names start with ``prefix``: other users'
    files (and symlinks) are never framebus's to read or remove."""
    try:
        names = sorted(n for n in os.listdir(SHM_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []
    me, out = os.geteuid(), []
    for n in names:
        try:
            st = os.lstat(_path(n))
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_uid == me:
            out.append(n)
    return out


# --- process identity --------------------------------------------------------------------------


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None if no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except PermissionError:  # pragma: no cover - hidepid: assume alive
        return 0
    # field 22; the command name (field 2) may hold spaces and parentheses
    return int(raw[raw.rindex(b")") + 2 :].split()[19])


def process_alive(pid: int, start: int) -> bool:
    """True if the process ``pid`` that started at ``start`` is still running (not a zombie).

    ``start`` 0 means unknown: any live process with that pid counts. Never base a signal on
    this: use :func:`is_process`.
    """
    if pid <= 0:
        return False
    now = process_start_time(pid)
    if now is None or (start and now != start):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


def process_uid(pid: int) -> int | None:
    """The real uid of ``pid``, or None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_command(pid: int) -> list[str]:
    """The argv of ``pid`` ([] if it cannot be read)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(64 * 1024)
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]]


def is_process(pid: int, start: int, uid: int, argv_tail: list[str]) -> bool:
    """True only if ``pid`` provably is the process meant: alive, started at ``start`` (which
    must be known, not 0), owned by ``uid``, and run with an argv ending in ``argv_tail``.

    A pid read from a file anyone can write must pass this before it is signalled.
    """
    if pid <= 1 or start <= 0 or process_start_time(pid) != start:
        return False
    if process_uid(pid) != uid:
        return False
    argv = process_command(pid)
    if len(argv) < len(argv_tail) + 1 or argv[-len(argv_tail) :] != argv_tail:
        return False
    return process_alive(pid, start)  # not a zombie, and still the same process
