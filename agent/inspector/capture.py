"""The inspector's capture: exchanges (one request and its response) in a store bounded in bytes.

Theory of operation
-------------------
`ConnectionCapture` is fed the bytes of one http/https connection as the agent relays them:
`request_bytes` with what the edge sent (the public client's requests), `response_bytes` with
what the upstream answered. Two `MessageFramer`s split them into messages; each request head
opens an `Exchange` (it shows at once, still waiting for its response), and responses are
matched to requests in order, as HTTP/1.1 requires. Each message keeps its head and at most
`CAPTURED_BODY_LIMIT` bytes of its body; parsing the heads waits until someone looks
(`agent.inspector.render`).

`CaptureStore` holds the exchanges, newest last, and counts the bytes they keep. Past its
limit (`inspect_db_size`) it drops the oldest exchanges first; an exchange still in flight
when it is dropped goes on being fed but is no longer counted or listed. No clock, no I/O:
`now` comes in as (wall seconds, monotonic seconds), ids from the `random` given.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from random import Random

from agent.inspector.framing import MessageFramer

__all__ = [
    "CAPTURED_BODY_LIMIT",
    "CAPTURED_HEAD_LIMIT",
    "DEFAULT_INSPECT_DB_SIZE",
    "OWN_EXCHANGES_KEPT",
    "CaptureStore",
    "ConnectionCapture",
    "Exchange",
    "Message",
]

#: Bytes of each request and response body kept for the inspector. Enough for the JSON and
#: form bodies people look at; a large upload or download is shown cut (with its full size),
#: as ngrok's inspector cuts long bodies.
CAPTURED_BODY_LIMIT = 10 * 1024
#: The longest head followed. The edge refuses request heads over 64 KiB (h11's default limit
#: is 16 KiB); a longer one means bytes the framer should not follow.
CAPTURED_HEAD_LIMIT = 64 * 1024
#: ngrok's default for `inspect_db_size: 0`: 50 MB of captured traffic, in memory only.
DEFAULT_INSPECT_DB_SIZE = 50 * 1000 * 1000
#: Exchanges a connection remembers as its own (`ConnectionCapture.exchanges`): replay reads
#: the one its request opened; a long keep-alive connection must not hold every exchange it
#: ever carried beyond what the store keeps.
OWN_EXCHANGES_KEPT = 8
#: Each exchange's bookkeeping counted against the store's limit beside the bytes it keeps.
_EXCHANGE_OVERHEAD = 512

Clock = Callable[[], tuple[float, float]]  # (wall seconds since the epoch, monotonic seconds)


class Message:
    """One captured request or response: its head as sent and the first bytes of its body."""

    __slots__ = ("body", "body_size", "complete", "head", "truncated")

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.body = b""
        self.body_size = 0
        self.truncated = False
        self.complete = False

    @property
    def kept(self) -> int:
        return len(self.head) + len(self.body)


class Exchange:
    """A request seen on an endpoint, and its response once it came (None until then)."""

    __slots__ = (
        "duration",
        "id",
        "remote_addr",
        "replay_of",
        "request",
        "response",
        "size",
        "start",
        "started",
        "tunnel_name",
    )

    def __init__(
        self, *, id: str, tunnel_name: str, remote_addr: str, now: tuple[float, float], head: bytes
    ) -> None:
        self.id = id
        self.tunnel_name = tunnel_name
        self.remote_addr = remote_addr
        self.start, self.started = now  # wall time for people, monotonic for the duration
        self.request = Message(head)
        self.response: Message | None = None
        self.duration: float | None = None  # seconds from request head to response end
        self.size = _EXCHANGE_OVERHEAD + len(head)  # what the store counts for it
        self.replay_of = ""  # the id of the exchange this one replayed, if it is a replay


class CaptureStore:
    """Exchanges, oldest first, keeping at most `limit` bytes (oldest dropped first)."""

    def __init__(
        self,
        limit: int = DEFAULT_INSPECT_DB_SIZE,
        *,
        random: Random | None = None,
        on_complete: Callable[[Exchange], None] | None = None,
    ):
        if limit <= 0:
            raise ValueError(f"the capture limit must be positive, not {limit}")
        self.limit = limit
        #: Called with each exchange whose response has ended (the agent logs it: agent.console).
        self.on_complete = on_complete
        self.size = 0
        self._exchanges: OrderedDict[str, Exchange] = OrderedDict()
        self._prefix = f"{(random or Random()).getrandbits(32):08x}"
        self._counter = 0

    def __len__(self) -> int:
        return len(self._exchanges)

    def new_id(self) -> str:
        """An id in ngrok's form: 8 hex digits for this agent run, then a counter."""
        self._counter += 1
        return f"{self._prefix}{self._counter:08x}"

    def add(self, exchange: Exchange) -> None:
        self._exchanges[exchange.id] = exchange
        self.size += exchange.size
        if self.size > self.limit:
            self._evict()

    def grew(self, exchange: Exchange, kept: int) -> None:
        """`exchange` keeps `kept` more bytes; ignored once it has been dropped."""
        exchange.size += kept
        if self._exchanges.get(exchange.id) is exchange:
            self.size += kept
            if self.size > self.limit:
                self._evict()

    def get(self, id: str) -> Exchange | None:
        return self._exchanges.get(id)

    def newest(self, *, limit: int | None = None, tunnel_name: str = "") -> list[Exchange]:
        """Newest first, only `tunnel_name`'s when given, at most `limit` of them."""
        found: list[Exchange] = []
        for exchange in reversed(self._exchanges.values()):
            if limit is not None and len(found) >= limit:
                break
            if not tunnel_name or exchange.tunnel_name == tunnel_name:
                found.append(exchange)
        return found

    def clear(self) -> None:
        self._exchanges.clear()
        self.size = 0

    def __iter__(self) -> Iterator[Exchange]:
        return iter(self._exchanges.values())

    def _evict(self) -> None:
        while self.size > self.limit and self._exchanges:
            _, dropped = self._exchanges.popitem(last=False)
            self.size -= dropped.size


class ConnectionCapture:
    """The capture of one connection; see the module docstring. Never raises."""

    def __init__(
        self,
        store: CaptureStore,
        *,
        tunnel_name: str,
        remote_addr: str,
        clock: Clock,
        body_limit: int = CAPTURED_BODY_LIMIT,
        head_limit: int = CAPTURED_HEAD_LIMIT,
    ) -> None:
        self._store = store
        self._tunnel_name = tunnel_name
        self._remote_addr = remote_addr
        self._clock = clock
        self._requests = MessageFramer(
            is_response=False,
            head_limit=head_limit,
            body_limit=body_limit,
            on_head=self._request_head,
            on_end=self._request_end,
        )
        self._responses = MessageFramer(
            is_response=True,
            head_limit=head_limit,
            body_limit=body_limit,
            on_head=self._response_head,
            on_end=self._response_end,
        )
        self._current: Exchange | None = None  # whose request body is being read
        self._awaiting: deque[Exchange] = deque()  # requests sent, response not begun
        self._methods: deque[str] = deque()  # their methods, for the response framer
        self._answering: Exchange | None = None  # whose response body is being read
        #: The first exchanges this connection opened, oldest first, at most
        #: `OWN_EXCHANGES_KEPT` (replay reads its own, the first).
        self.exchanges: list[Exchange] = []

    @property
    def following(self) -> bool:
        """False once neither direction is HTTP the framers follow (feeding is then a no-op)."""
        return not (self._requests.opaque and self._responses.opaque)

    def request_bytes(self, data: bytes | bytearray) -> None:
        """Bytes from the public client towards the upstream; `b""` at their end (an opaque
        framer returns at once)."""
        self._requests.feed(data)

    def response_bytes(self, data: bytes | bytearray) -> None:
        """Bytes from the upstream towards the public client; `b""` at their end."""
        self._responses.feed(data, self._methods)

    # --- the framers' sinks ------------------------------------------------------------------

    def _request_head(self, head: bytes) -> None:
        store = self._store
        exchange = Exchange(
            id=store.new_id(),
            tunnel_name=self._tunnel_name,
            remote_addr=self._remote_addr,
            now=self._clock(),
            head=head,
        )
        self._current = exchange
        self._awaiting.append(exchange)
        self._methods.append(_method(head))
        if len(self.exchanges) < OWN_EXCHANGES_KEPT:
            self.exchanges.append(exchange)
        store.add(exchange)

    def _request_end(self, body: bytes, size: int, truncated: bool) -> None:
        exchange = self._current
        if exchange is not None:
            _finish(self._store, exchange.request, body, size, truncated, exchange)
            self._current = None

    def _response_head(self, head: bytes) -> None:
        if not self._awaiting:  # an answer nobody asked for: stop following
            self._responses.stop()
            return
        exchange = self._awaiting.popleft()
        exchange.response = Message(head)
        self._store.grew(exchange, len(head))
        self._answering = exchange

    def _response_end(self, body: bytes, size: int, truncated: bool) -> None:
        exchange = self._answering
        if exchange is None or exchange.response is None:
            return
        self._answering = None
        _finish(self._store, exchange.response, body, size, truncated, exchange)
        exchange.duration = max(0.0, self._clock()[1] - exchange.started)
        if self._store.on_complete is not None:
            self._store.on_complete(exchange)


def _finish(
    store: CaptureStore, message: Message, body: bytes, size: int, truncated: bool, owner: Exchange
) -> None:
    message.body = body
    message.body_size = size
    message.truncated = truncated
    message.complete = True
    if body:
        store.grew(owner, len(body))


def _method(head: bytes) -> str:
    return head[: head.find(b" ")].decode("ascii", "replace")
