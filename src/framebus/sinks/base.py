"""What every sink shares: attach to a stream, pick frames, encode each once, fan it out.

A sink (an MJPEG server, a ZeroMQ sender, a pipe writer, a disk sampler) is a
:class:`FrameSink`: one reader of one stream, one worker thread, one encode per chosen frame,
and any number of consumers (:meth:`FrameSink.subscribe`), each with its own
:class:`LatestSlot`. The buffering policy, stated once for all of them:

* The worker reads and encodes only while at least one consumer is subscribed; with none it
  sleeps on a condition (no reading, no encoding, no spinning).
* Each chosen frame is encoded once; the same :class:`Encoded` object goes to every consumer.
* Each consumer holds at most one item. A new item replaces one not yet taken (counted as
  dropped): a slow consumer skips items and gets the newest when it is ready; it never delays
  the worker or the other consumers (unless the sink is ``lossless``, see :class:`FrameSink`).
* Nothing queues without a bound: per consumer one item, plus the one item in the worker's hand.

Only the public reading API is used (``framebus.attach``, ``StreamReader.view``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Literal, NoReturn, Protocol, TypeVar, cast

import numpy as np

import framebus
from framebus import FrameInfo, PublisherLost, ReadTimeout, SinkClosed, StreamEnded, StreamReader

__all__ = [
    "ConsumerStats",
    "Encoded",
    "FrameSink",
    "LatestSlot",
    "Mailbox",
    "MailboxBase",
    "Pick",
    "PickKind",
    "SinkClosed",
    "SinkStats",
    "Subscription",
]

log = logging.getLogger("framebus.sinks")

T = TypeVar("T")
_Sink = TypeVar("_Sink", bound="FrameSink[Any]")

PickKind = Literal["newest", "every", "interval"]

# How long the worker blocks in one read or one wait before it looks at close() again: the
# bound on how late close() is noticed, and cheap (one futex wake-up per period when idle).
_POLL = 0.2
# How long close() waits for the worker; an encode that hangs longer is left to finish alone.
_JOIN_TIMEOUT = 5.0


# -- choosing frames ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pick:
    """How a sink chooses the frames it encodes. Build it with the class methods.

    * :meth:`newest`: each frame the reader hands over. On a latest-mode stream that is the
      newest frame, the ring skipping whatever arrived while the sink was busy.
    * :meth:`every`: the sink *reads* every frame of the ring, in order. Only meaningful on an
      every-mode stream (the capture then waits for the sink); on a latest-mode stream the ring
      skips frames as for ``newest``. Consumers may still skip items: for lossless delivery to
      one consumer, make the sink ``lossless=True``.
    * :meth:`interval`: at most one frame per ``seconds``: the first frame whose capture time
      is at least the previous chosen frame's capture time plus ``seconds``. Frames in between
      are read (cheap, zero copy) but not encoded.

    ``newest`` and ``every`` read the same frames (the stream's mode decides); they differ in
    what they promise, and sinks may check it.
    """

    kind: PickKind
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("newest", "every", "interval"):
            raise ValueError(f"Pick kind must be newest, every or interval, got {self.kind!r}")
        if self.kind == "interval":
            if not (self.seconds > 0 and math.isfinite(self.seconds)):
                raise ValueError(f"Pick.interval seconds must be > 0 and finite: {self.seconds}")
        elif self.seconds != 0.0:
            raise ValueError(f"Pick.{self.kind}() takes no seconds")

    @classmethod
    def newest(cls) -> Pick:
        return cls("newest")

    @classmethod
    def every(cls) -> Pick:
        return cls("every")

    @classmethod
    def interval(cls, seconds: float) -> Pick:
        return cls("interval", float(seconds))


# -- the per-consumer mailbox ------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerStats:
    """One consumer's counts. Every item put ends up delivered, dropped, or still pending."""

    delivered: int
    """Items this consumer took with ``get()``."""
    dropped: int
    """Items replaced before this consumer took them, or discarded by ``close()``."""
    behind: int = 0
    """Times this consumer fell behind and skipped to the next keyframe (GOP-aware mailboxes
    only, see :class:`framebus.sinks.gop.GopSlot`)."""


class Mailbox(Protocol[T]):
    """What a consumer's mailbox does (:class:`LatestSlot`, :class:`~framebus.sinks.gop.GopSlot`):
    the producer puts, the consumer gets, either closes."""

    def put(self, item: T) -> bool: ...

    def get(self, timeout: float | None = None) -> T: ...

    def wait_empty(self, timeout: float | None = None) -> bool: ...

    def close(self, error: BaseException | None = None) -> None: ...

    @property
    def closed(self) -> bool: ...

    def stats(self) -> ConsumerStats: ...


class MailboxBase(ABC, Generic[T]):
    """What every mailbox shares: one lock, waiting for an item with a timeout, closing (with
    or without an error for the consumer), the counts. A subclass says how items are held
    (:meth:`_has`, :meth:`_take`, :meth:`_discard`) and how they are put."""

    def __init__(self, notify: Callable[[], None] | None = None) -> None:
        self._cond = threading.Condition()
        self._notify = notify  # told (outside the lock) after each put and at close
        self._closed = False
        self._error: BaseException | None = None
        self._delivered = 0
        self._dropped = 0

    @abstractmethod
    def _has(self) -> bool:
        """Under the lock: an item is there to take."""

    @abstractmethod
    def _take(self) -> T:
        """Under the lock, with :meth:`_has` true: remove the next item and return it."""

    @abstractmethod
    def _discard(self) -> int:
        """Under the lock: drop every item held; how many."""

    def get(self, timeout: float | None = None) -> T:
        """Take the next item, waiting up to ``timeout`` seconds (None: forever) for one.

        Raises :class:`framebus.ReadTimeout` when none came in time, :class:`SinkClosed` after
        ``close()``, or the error given to ``close(error)`` once every item held was taken.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._has():
                if self._closed:
                    self._raise_closed()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ReadTimeout(f"no new item within {timeout} s")
                self._cond.wait(remaining)
            item = self._take()
            self._delivered += 1
            self._cond.notify_all()  # a lossless producer waits for the mailbox to empty
            return item

    def _raise_closed(self) -> NoReturn:
        if self._error is None:
            raise SinkClosed("closed")
        # a copy per raise: one exception object raised in several threads grows one traceback
        raise copy.copy(self._error) from self._error

    def wait_empty(self, timeout: float | None = None) -> bool:
        """Wait until no item is held (taken, or the mailbox closed). False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._has() or self._closed, timeout)

    def close(self, error: BaseException | None = None) -> None:
        """Wake every waiter. ``close()`` drops what is held (``get()`` raises SinkClosed);
        ``close(error)`` keeps it for ``get()``, which then raises (a copy of) ``error``. The
        first close wins; later puts are ignored."""
        with self._cond:
            if self._closed:
                return
            self._closed, self._error = True, error
            if error is None:
                self._dropped += self._discard()
            self._cond.notify_all()
        if self._notify is not None:
            self._notify()

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> ConsumerStats:
        with self._cond:
            return ConsumerStats(self._delivered, self._dropped)


class LatestSlot(MailboxBase[T]):
    """A one-item mailbox for one consumer: the newest item wins. Thread-safe.

    Buffering policy: at most one item. :meth:`put` never blocks; it replaces an item not yet
    taken (counting it in ``dropped``). :meth:`get` waits for an item put after the last one
    taken. A slow consumer therefore gets the newest item when it is ready and never delays
    the producer; memory is one item.

    Closing: ``close()`` discards a pending item and every later ``get()`` raises
    :class:`SinkClosed` (someone stopped this consumer: nobody wants more). ``close(error)``
    keeps a pending item for the next ``get()`` and raises (a copy of) ``error`` after it: the
    stream ended, and its last frame is still wanted. The first close wins; later ``put()``
    calls are ignored.
    """

    def __init__(self, notify: Callable[[], None] | None = None) -> None:
        super().__init__(notify)
        self._item: T | None = None
        self._has_item = False  # separate flag: None may be a legitimate item

    def put(self, item: T) -> bool:
        """Store ``item``, replacing one not yet taken. False (and ignored) once closed."""
        with self._cond:
            if self._closed:
                return False
            if self._has_item:
                self._dropped += 1
            self._item, self._has_item = item, True
            self._cond.notify_all()
        if self._notify is not None:
            self._notify()
        return True

    def _has(self) -> bool:
        return self._has_item

    def _take(self) -> T:
        item = self._item
        self._item, self._has_item = None, False
        return cast(T, item)  # _has_item said it is a T (None may be one)

    def _discard(self) -> int:
        held = int(self._has_item)
        self._item, self._has_item = None, False
        return held


# -- the sink ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded(Generic[T]):
    """The product of one encode, shared (the same object) by every consumer."""

    data: T
    """What :meth:`FrameSink.encode` returned (JPEG bytes, a wire message, ...)."""
    info: FrameInfo
    """The frame it was encoded from."""


@dataclass(frozen=True)
class SinkStats:
    """A snapshot of a sink's counters."""

    name: str
    """The stream's name."""
    pick: Pick
    lossless: bool
    running: bool
    """The worker thread is alive (it starts at the first subscribe)."""
    frames_read: int
    """Frames the reader lent the worker (interval picks read frames they do not encode)."""
    frames_skipped: int
    """Frames the ring skipped for this sink's reader (latest mode: busy, or nobody watched)."""
    frames_encoded: int
    encode_errors: int
    """Frames skipped because ``encode`` raised (the first error is logged with traceback)."""
    last_encode_error: str
    """The message of the last such error ("" if none)."""
    encode_seconds: float
    """Total wall time spent in ``encode``."""
    consumers: int
    per_consumer: tuple[ConsumerStats, ...]
    """Current consumers only, in subscription order."""
    error: str | None
    """Why the worker stopped (stream ended, publisher lost, an unexpected error), else None."""


class Subscription(Generic[T]):
    """One consumer of a :class:`FrameSink`, with its own mailbox (a :class:`LatestSlot`
    unless the sink says otherwise).

    ``get()`` returns the next :class:`Encoded` item of its mailbox: the newest not yet taken
    for a :class:`LatestSlot` (see it for what a slow consumer loses). Iterating yields items
    until the stream ends or the sink closes (PublisherLost propagates). ``close()`` (or
    leaving ``with``) unsubscribes.
    """

    def __init__(self, sink: FrameSink[T], slot: Mailbox[Encoded[T]]) -> None:
        self._sink = sink
        self._slot = slot

    def get(self, timeout: float | None = None) -> Encoded[T]:
        """The next item; raises ReadTimeout, SinkClosed, StreamEnded or PublisherLost."""
        return self._slot.get(timeout)

    def stats(self) -> ConsumerStats:
        return self._slot.stats()

    @property
    def mailbox(self) -> Mailbox[Encoded[T]]:
        """This consumer's mailbox (a GOP-aware one has more to say, e.g. ``skip_to_key()``)."""
        return self._slot

    @property
    def closed(self) -> bool:
        return self._slot.closed

    def close(self) -> None:
        """Unsubscribe (idempotent): a pending item is discarded, ``get()`` raises SinkClosed."""
        self._sink._unsubscribe(self)
        self._slot.close()

    def __iter__(self) -> Iterator[Encoded[T]]:
        while True:
            try:
                yield self._slot.get()
            except (StreamEnded, SinkClosed):
                return

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class FrameSink(ABC, Generic[T]):
    """One reader of stream ``name``, one worker thread, one encode per chosen frame.

    Subclasses implement :meth:`encode`. The worker thread (``framebus-sink-<name>``) starts at
    the first :meth:`subscribe`; it reads frames per ``pick`` only while a consumer is
    subscribed, waiting on the reader for each new frame (so it never encodes faster than the
    source delivers), encodes each chosen frame once from a zero-copy view, and puts the same
    :class:`Encoded` in every consumer's :class:`LatestSlot`.

    ``lossless=False`` (the default, for many consumers such as browsers): a slow consumer
    skips items; it never delays the worker nor the others. ``lossless=True`` (for one
    consumer that must see every frame read, such as a pipe or a disk writer): before each put
    the worker waits until every consumer has taken the previous item, so the slowest consumer
    paces the sink (and, on an every-mode stream, the capture). The bound stays one item per
    consumer plus one in the worker's hand. With ``Pick.every`` on an every-mode stream a
    lossless sink delivers every frame, in order.

    A consumer that unsubscribes while a frame is being encoded costs at most that one encode.
    The reader stays attached while nobody watches: on a latest-mode stream that costs nothing;
    on an every-mode stream the capture waits for it, as every mode promises (frames are held,
    not lost, until a consumer comes).

    Errors: when the stream ends (StreamEnded) or its publisher dies (PublisherLost) each
    consumer gets its pending item, then that error from ``get()``; the worker stops, and later
    subscriptions raise it at once. When ``encode`` raises, the frame is skipped and counted in
    ``encode_errors`` (only the first is logged, with its traceback): one bad frame does not end
    the stream for every viewer. Any other unexpected error in the worker is logged and given to
    the consumers the same way as StreamEnded.

    :meth:`close` (idempotent; ``with`` does it) stops the worker within about 0.2 s plus the
    running encode, releases the reader and closes every subscription (``get()`` raises
    :class:`SinkClosed`).
    """

    reads_frames = True
    """False for a sink that passes on something else than the ring's frames (a camera's
    encoded frames): it attaches no frame reader, which on an every-mode stream would hold up
    the capture, and overrides :meth:`_next_item`."""

    def __init__(self, name: str, *, pick: Pick | None = None, lossless: bool = False) -> None:
        self.pick = Pick.newest() if pick is None else pick
        self.lossless = lossless
        self._reader: StreamReader | None = framebus.attach(name) if self.reads_frames else None
        self._name = name
        self.every_mode = self._reader is not None and self._reader.stats().mode == "every"
        """The stream's capture waits for this sink's reader: an idle sink of it must close."""
        self._cond = threading.Condition()  # guards everything below; the worker sleeps on it
        self._subs: list[Subscription[T]] = []
        self._closed = False
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None  # set once the worker stopped on an error
        self._frames_read = 0
        self._frames_skipped = 0
        self._frames_encoded = 0
        self._encode_errors = 0
        self._last_encode_error = ""
        self._encode_seconds = 0.0
        self._last_chosen: float | None = None  # capture time of the last frame chosen

    @property
    def name(self) -> str:
        return self._name

    @abstractmethod
    def encode(self, frame: np.ndarray, info: FrameInfo) -> T:
        """Encode one frame. Called in the worker thread, once per chosen frame.

        ``frame`` is a read-only view of shared memory, valid during this call only: copy what
        you keep. The result is shared by every consumer: do not mutate it afterwards.
        """

    # -- consumers -----------------------------------------------------------------------------

    def subscribe(self, notify: Callable[[], None] | None = None) -> Subscription[T]:
        """A new consumer. Raises SinkClosed once the sink is closed; after the stream ended,
        the subscription's ``get()`` raises the end error at once.

        ``notify`` is called from the worker thread after each new item and when the
        subscription closes: an event loop can wake a coroutine with it
        (``loop.call_soon_threadsafe``) instead of blocking a thread in ``get()``.
        """
        with self._cond:
            if self._closed:
                raise SinkClosed(f"the sink of stream {self._name!r} is closed")
            slot = self._mailbox(notify)
            sub = Subscription(self, slot)
            if self._error is not None:
                slot.close(self._error)
                return sub
            self._subs.append(sub)
            if self._thread is None:
                # started here, not in __init__: a subclass has finished initialising by now
                self._thread = threading.Thread(
                    target=self._run, name=f"framebus-sink-{self._name}", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
        return sub

    def _mailbox(self, notify: Callable[[], None] | None) -> Mailbox[Encoded[T]]:
        """A new consumer's mailbox, made under the sink's lock: a :class:`LatestSlot` (a sink
        whose items depend on each other gives a mailbox that knows it)."""
        return LatestSlot(notify)

    def _delivering(self, item: Encoded[T]) -> None:
        """Called under the sink's lock just before ``item`` goes to the consumers subscribed
        now (a consumer subscribing later does not get it: a sink that keeps items for late
        consumers keeps them here)."""

    def _unsubscribe(self, sub: Subscription[T]) -> None:
        # no notify: the worker notices an empty list after its current read (<= _POLL)
        with self._cond, contextlib.suppress(ValueError):
            self._subs.remove(sub)

    # -- the worker ----------------------------------------------------------------------------

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            while self._wait_for_consumers():
                item = self._next_item()
                if item is not None:
                    self._deliver(item)
        except (StreamEnded, PublisherLost) as exc:
            error = exc
        except BaseException as exc:
            log.exception("sink of stream %r stopped on an unexpected error", self._name)
            error = exc
        finally:
            if self._reader is not None:
                self._reader.release()  # only this thread uses the reader once it runs
            with self._cond:
                if error is not None:
                    self._error = error
                subs, self._subs = self._subs, []
            for sub in subs:
                sub._slot.close(error)

    def _wait_for_consumers(self) -> bool:
        """Sleep until someone watches; False once the sink is closed."""
        with self._cond:
            while not self._subs and not self._closed:
                self._cond.wait()
            return not self._closed

    def _next_item(self) -> Encoded[T] | None:
        """Read one frame and encode it if chosen; None if nothing to deliver this round."""
        reader = self._reader
        assert reader is not None  # a sink that reads no frames overrides this
        with contextlib.ExitStack() as stack:
            try:
                # a short wait: close() and the last unsubscribe are noticed within _POLL
                frame = stack.enter_context(reader.view(timeout=_POLL))
            except ReadTimeout:
                return None
            info = reader.info
            assert info is not None  # view() sets it
            with self._cond:
                self._frames_read += 1
                self._frames_skipped += info.skipped
                if not self._subs or self._closed:
                    return None  # everyone left during the read: no encoding for no one
            interval = self.pick.kind == "interval"
            last = self._last_chosen
            if interval and last is not None and info.timestamp < last + self.pick.seconds:
                return None  # read, not chosen: no encode
            start = time.perf_counter()
            try:
                data = self.encode(frame, info)
            except Exception as exc:
                with self._cond:
                    self._encode_errors += 1
                    self._last_encode_error = str(exc)[:300]
                    first = self._encode_errors == 1
                if first:
                    log.exception(
                        "sink of stream %r: encode failed, frame skipped (further failures are "
                        "only counted in stats().encode_errors)",
                        self._name,
                    )
                return None
            finally:
                elapsed = time.perf_counter() - start
                with self._cond:
                    self._encode_seconds += elapsed
            if interval:
                self._last_chosen = info.timestamp  # after success: a failed frame is no sample
            with self._cond:
                self._frames_encoded += 1
        # the view is released here, before a lossless wait: the capture need not wait for it
        return Encoded(data, info)

    def _deliver(self, item: Encoded[T]) -> None:
        if self.lossless:
            with self._cond:
                subs = list(self._subs)
            for sub in subs:
                # once empty a slot stays empty until we put: waiting in turn is enough
                while not sub._slot.wait_empty(_POLL):
                    if self._closed:
                        return
        with self._cond:
            self._delivering(item)
            subs = list(self._subs)
        for sub in subs:
            sub._slot.put(item)  # ignored by a subscription closed meanwhile

    # -- owner ---------------------------------------------------------------------------------

    def stats(self) -> SinkStats:
        with self._cond:
            thread, err = self._thread, self._error
            return SinkStats(
                name=self._name,
                pick=self.pick,
                lossless=self.lossless,
                running=thread is not None and thread.is_alive(),
                frames_read=self._frames_read,
                frames_skipped=self._frames_skipped,
                frames_encoded=self._frames_encoded,
                encode_errors=self._encode_errors,
                last_encode_error=self._last_encode_error,
                encode_seconds=self._encode_seconds,
                consumers=len(self._subs),
                per_consumer=tuple(s.stats() for s in self._subs),
                error=None if err is None else f"{type(err).__name__}: {err}",
            )

    def close(self) -> None:
        """Stop the worker, release the reader, close every subscription. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            subs, self._subs = self._subs, []
            self._cond.notify_all()
        for sub in subs:
            sub._slot.close()  # consumers blocked in get() wake up now, with SinkClosed
        if thread is None:
            if self._reader is not None:
                self._reader.release()  # no worker ever used it
        elif thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT)
            if thread.is_alive():
                # the worker releases the reader itself when its encode returns
                log.warning("sink of stream %r: worker still encoding after close()", self._name)

    def __enter__(self: _Sink) -> _Sink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
