"""Receive-window policy: how much credit to grant a sender, and when.

Theory of operation: muxado gives every stream an implicit 256 KiB window in each direction and
the receiver extends it with WNDINC as its reader consumes data. A fixed window caps a stream at
window / RTT, so Burrow's receivers auto-tune, needing nothing from the sender (ngrok's peers
benefit too):

* `size` is the window this side currently offers: credit the peer still holds + bytes received
  but unread + bytes read but not yet re-granted. It starts at `INITIAL_WINDOW`.
* A WNDINC is sent once the reader has consumed half of `size` (fewer, larger updates; the same
  rule as yamux and h2).
* When an update is due and the unread buffer is at most a quarter of `size`, the reader keeps up
  and the window, not the reader, is what limits the stream: `size` doubles, up to the per-stream
  ceiling and only while the session-wide budget has room. A slow or stalled reader leaves data
  unread, so its window never grows: a slow reader slows its sender instead of growing memory.

Growth needs a sender that keeps credit past the initial window. ngrok's muxado implementations
clamp their send window at 256 KiB, so a receiver facing them must never grant beyond it: the
session keeps `max_size` at `INITIAL_WINDOW` until the handshake shows a Burrow peer.

Memory per stream is therefore at most `size` (bounded by `max_size`), and the growth of all the
streams of one session together is bounded by `SessionBudget`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: muxado's implicit initial window in both directions; fixed by the protocol, never negotiated.
INITIAL_WINDOW = 256 * 1024
#: Default per-stream ceiling: 16 MiB covers 1 GB/s at 16 ms RTT.
DEFAULT_MAX_STREAM_WINDOW = 16 * 1024 * 1024
#: Default bound on window growth summed over one session's streams.
DEFAULT_SESSION_BUDGET = 64 * 1024 * 1024


class SessionBudget:
    """Window growth beyond `INITIAL_WINDOW`, shared by all streams of one session."""

    __slots__ = ("available", "limit")

    def __init__(self, limit: int = DEFAULT_SESSION_BUDGET) -> None:
        self.limit = limit
        self.available = limit

    def take(self, wanted: int) -> int:
        granted = min(wanted, self.available)
        self.available -= granted
        return granted

    def give_back(self, amount: int) -> None:
        self.available = min(self.limit, self.available + amount)


@dataclass(slots=True)
class ReceiveWindow:
    """One stream's receive side: credit held by the peer, unread bytes, un-granted bytes."""

    budget: SessionBudget
    max_size: int = DEFAULT_MAX_STREAM_WINDOW
    size: int = INITIAL_WINDOW
    credit: int = INITIAL_WINDOW
    unread: int = 0
    unacked: int = 0

    def accept(self, length: int) -> bool:
        """Account for `length` received bytes; False if the peer exceeded its credit."""
        if length > self.credit:
            return False
        self.credit -= length
        self.unread += length
        return True

    def consume(self, length: int) -> int:
        """The reader took `length` bytes; returns the WNDINC increment to send now (0 = none)."""
        length = min(length, self.unread)
        self.unread -= length
        self.unacked += length
        if self.unacked * 2 < self.size:
            return 0
        if self.unread * 4 <= self.size and self.size < self.max_size:
            growth = self.budget.take(min(self.size, self.max_size - self.size))
            self.size += growth
            self.unacked += growth
        increment, self.unacked = self.unacked, 0
        self.credit += increment
        return increment

    def discard(self) -> int:
        """The reader will read no more: its unread bytes are dropped and count as read. Returns
        the WNDINC increment to send now (0 = none), due by the same half-window rule as
        `consume` but never growing the window.

        Without the grant a writer whose credit is used up would wait forever: nothing it could
        send would reach the receiver, so it would never learn that nobody reads. The rule is
        enough for that: with no credit left, every byte of `size` is unread or unacked, so an
        update is always due; with some left the writer can still send and draw the RST."""
        self.unacked += self.unread
        self.unread = 0
        if self.unacked * 2 < self.size:
            return 0
        increment, self.unacked = self.unacked, 0
        self.credit += increment
        return increment

    def release(self) -> None:
        """The stream is gone: return its growth to the session budget."""
        self.budget.give_back(self.size - INITIAL_WINDOW)
        self.size = INITIAL_WINDOW
