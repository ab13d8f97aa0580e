"""Everything that talks to the operating system below Python's own abstractions.

* atomic 64-bit loads, stores, compare-and-swap and fences on shared memory, through GCC's
  ``libatomic`` (ctypes): correct on weakly ordered CPUs (ARM), not only on x86;
* futex wait/wake on a 32-bit word in shared memory: readers in any process sleep without
  spinning and a publisher wakes all of them with one system call;
* shared-memory segments as files in ``/dev/shm`` (what ``shm_open`` does on Linux), opened
  with ``os.open`` rather than ``multiprocessing.shared_memory`` so that no resource tracker can
  unlink a stream when a reader exits (CPython issue 82300), created ``0600`` and fully
  allocated up front so a full ``/dev/shm`` fails at creation, not later with SIGBUS;
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
import sys

from .errors import PlatformError, SharedMemoryFull

__all__ = [
    "SHM_DIR",
    "Segment",
    "Words",
    "futex_wait",
    "futex_wake",
    "list_segments",
    "process_alive",
    "process_start_time",
    "shm_free_bytes",
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


def _space_error(name: str, size: int) -> SharedMemoryFull:
    free = shm_free_bytes()
    return SharedMemoryFull(
        f"not enough shared memory for {name}: needs {size / 2**20:.1f} MiB, "
        f"{SHM_DIR} has {free / 2**20:.1f} MiB free; free space there, use fewer slots or "
        "smaller frames, or in Docker raise --shm-size (e.g. --shm-size=1g)"
    )


class Segment:
    """One mapped shared-memory segment. The creator owns its name; see :func:`unlink_segment`."""

    def __init__(self, name: str, fd: int, size: int) -> None:
        self.name = name
        self.size = size
        self.inode = os.fstat(fd).st_ino  # tells this segment from a later one of the same name
        try:
            # MAP_POPULATE: map every page now, not by a fault on the first frame of each slot
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
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
        if size > shm_free_bytes():
            raise _space_error(name, size)
        fd = os.open(_path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            os.close(fd)
            unlink_segment(name)
            if exc.errno in (errno.ENOSPC, errno.ENOMEM):
                raise _space_error(name, size) from None
            raise
        return cls(name, fd, size)

    @classmethod
    def open(cls, name: str) -> Segment:
        """Map an existing segment. Raises FileNotFoundError."""
        fd = os.open(_path(name), os.O_RDWR)
        size = os.fstat(fd).st_size
        if size == 0:
            os.close(fd)
            raise FileNotFoundError(errno.ENOENT, "segment not initialised yet", name)
        return cls(name, fd, size)

    def close(self) -> None:
        """Unmap. If a caller still holds a numpy view, the mapping lives until that view dies."""
        self._anchor = None
        # a live numpy view keeps the mmap object, and so the mapping, alive until it dies
        with contextlib.suppress(BufferError):
            self.mm.close()


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
    try:
        return sorted(n for n in os.listdir(SHM_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


# --- process identity --------------------------------------------------------------------------


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None if no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except PermissionError:  # pragma: no cover - hidepid: assume alive
        return 0
    # field 22; the command name (field 2) may hold spaces and parentheses
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def process_alive(pid: int, start: int) -> bool:
    """True if the process ``pid`` that started at ``start`` is still running (not a zombie)."""
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
