"""Reading many byte ranges of remote files the way the wire wants.

A command that needs thousands of small ranges (a remap of a 5,000-key
checkpoint at a URL) plans them all first, in the order it will use them:
:func:`plan_requests` merges ranges that are consecutive in that order and
near each other in the same file (a gap of at most ``gap_bytes``) into one
request of at most ``max_request_bytes``; a longer range is split into parts.
:class:`RangeReader` then keeps up to ``max_inflight`` requests going at once
(tensorstore reads are futures) within a budget of ``inflight_bytes`` held in
memory, and hands out each planned range's bytes in the planned order. A
budget smaller than one request still works: one request at a time.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ckptmap.errors import UsageError

__all__ = ["PendingRead", "RangeReader", "ReadOptions", "Want", "plan_requests", "read_options"]


@dataclass(frozen=True)
class ReadOptions:
    """How remote byte ranges are fetched.

    Attributes:
        max_inflight: requests issued at once (at least 1).
        inflight_bytes: bytes requested and not yet used, at most (one
            request is always allowed, whatever its size).
        gap_bytes: ranges this close in one file are fetched as one request
            (the gap is read and dropped).
        max_request_bytes: the longest request; a longer range is fetched in parts.
    """

    max_inflight: int = 32
    inflight_bytes: int = 256 << 20
    gap_bytes: int = 1 << 20
    max_request_bytes: int = 16 << 20  # tensorstore holds ~3x a response while it arrives

    def __post_init__(self) -> None:
        for name in ("max_inflight", "max_request_bytes"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("inflight_bytes", "gap_bytes"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must not be negative, not {getattr(self, name)}")


def read_options(max_inflight: int, inflight_mib: int) -> ReadOptions:
    """The read options of the ``max_inflight`` and ``inflight_mib`` command options.

    Raises:
        UsageError: for fewer than 1 request or a negative budget (naming the option).
    """
    if max_inflight < 1:
        raise UsageError(f"max_inflight must be at least 1, not {max_inflight}")
    if inflight_mib < 0:
        raise UsageError(f"inflight_mib must not be negative, not {inflight_mib}")
    return ReadOptions(max_inflight=max_inflight, inflight_bytes=inflight_mib << 20)


@dataclass(frozen=True)
class Want:
    """One byte range a command needs: ``length`` bytes of file ``name`` at ``offset``."""

    name: str
    offset: int
    length: int


@dataclass
class Request:
    """One read sent to the store; it serves planned ranges up to number ``last_want``."""

    name: str
    start: int
    end: int
    last_want: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Segment:
    """The part of a planned range held by request ``request`` at ``offset``."""

    request: int
    offset: int
    length: int


@dataclass
class RequestPlan:
    """The requests for a list of wanted ranges, and where each range's bytes are in them."""

    requests: list[Request] = field(default_factory=list)
    segments: list[list[Segment]] = field(default_factory=list)


def plan_requests(wants: Sequence[Want], options: ReadOptions) -> RequestPlan:
    """Merge and split ``wants`` (in the order they will be used) into requests.

    A range joins the last request of its file when it starts no earlier than
    that request and at most ``gap_bytes`` after its end, and the request stays
    within ``max_request_bytes``. Requests are listed in the order they are
    first needed.
    """
    plan = RequestPlan()
    limit = options.max_request_bytes
    open_by_file: dict[str, int] = {}  # the last request of each file
    for number, want in enumerate(wants):
        pieces: list[Segment] = []
        pos, end = want.offset, want.offset + want.length
        while pos < end:
            at = open_by_file.get(want.name)
            last = plan.requests[at] if at is not None else None
            if (
                last is not None
                and at is not None
                and last.start <= pos <= last.end + options.gap_bytes
                and pos < last.start + limit
            ):
                take = min(end, last.start + limit) - pos
                last.end = max(last.end, pos + take)
                last.last_want = number
                pieces.append(Segment(at, pos - last.start, take))
            else:
                take = min(end - pos, limit)
                open_by_file[want.name] = len(plan.requests)
                plan.requests.append(Request(want.name, pos, pos + take, number))
                pieces.append(Segment(len(plan.requests) - 1, 0, take))
            pos += take
        plan.segments.append(pieces)
    return plan


class PendingRead(Protocol):
    """A read under way; ``result()`` waits for its bytes (errors name the file)."""

    def result(self) -> bytes: ...


class RangeSource(Protocol):
    """What :class:`RangeReader` reads from: a location that can start reads."""

    def start_read(self, name: str, offset: int, length: int) -> PendingRead: ...


class RangeReader:
    """The bytes of planned ranges, in order, with many requests in flight.

    Args:
        source: the location the files are in (:meth:`start_read`).
        wants: the ranges, in the order they will be taken.
        options: concurrency, memory budget, merging.

    Iterating yields one ``memoryview`` per want. A view stays valid after
    later ones are taken (the bytes are only dropped by the reader).
    """

    def __init__(self, source: RangeSource, wants: Sequence[Want], options: ReadOptions) -> None:
        self._source = source
        self._options = options
        self.plan = plan_requests(wants, options)
        self._issued: collections.deque[tuple[int, PendingRead]] = collections.deque()
        self._done: dict[int, memoryview] = {}
        self._next = 0  # the next request to issue
        self._held = 0  # bytes of issued requests not yet released

    @property
    def request_count(self) -> int:
        """How many requests the plan makes."""
        return len(self.plan.requests)

    def __iter__(self) -> Iterator[memoryview]:
        requests = self.plan.requests
        ends: dict[int, list[int]] = {}  # want number -> the requests it is the last user of
        for number, request in enumerate(requests):
            ends.setdefault(request.last_want, []).append(number)
        for number, segments in enumerate(self.plan.segments):
            parts = [self._bytes(s.request)[s.offset : s.offset + s.length] for s in segments]
            if len(parts) == 1:
                yield parts[0]
            else:
                yield memoryview(b"".join(parts))
            for done in ends.pop(number, ()):
                self._done.pop(done, None)
                self._held -= requests[done].length
            self._issue()

    def _bytes(self, request: int) -> memoryview:
        while request not in self._done:
            if not self._issued:
                self._issue(force=True)
            number, pending = self._issued.popleft()
            self._done[number] = memoryview(pending.result())
            self._issue()
        return self._done[request]

    def _issue(self, *, force: bool = False) -> None:
        """Start requests while the window and the byte budget allow (one at least if ``force``)."""
        options = self._options
        requests = self.plan.requests
        while self._next < len(requests):
            request = requests[self._next]
            fits = self._held + request.length <= options.inflight_bytes
            if not (force or (len(self._issued) < options.max_inflight and fits)):
                return
            force = False
            pending = self._source.start_read(request.name, request.start, request.length)
            self._issued.append((self._next, pending))
            self._held += request.length
            self._next += 1
