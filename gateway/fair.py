"""Fair queueing: which round of the round-robin a new job joins.

Every waiting job carries a *round*; jobs are taken by ``(round, arrival)``. A user with weight ``w``
gets ``w`` jobs per round, so with one job each per turn the heavy user's 50th job waits behind every
other user's first. The round is derived from the waiting jobs alone, so all stores compute it the
same way (Redis in Lua, SQLite in its transaction, memory in-process):

* ``current`` — the lowest round among waiting jobs (the round being served; 0 when none wait);
* the user's newest round ``r_u`` among their waiting jobs and how many of them are in it, ``n_u``;
* the new job joins ``max(r_u, current)``, or the next round when the user's share of it is used.

A user who joins late (no waiting jobs) lands at the end of the current round: served next turn. A
user's own jobs keep their order (rounds never decrease per user, and arrival breaks ties). The
order ``fifo`` puts every job in round 0, i.e. arrival order, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ORDERS = ("fair", "fifo")


@dataclass(frozen=True)
class FairPolicy:
    """``order``: ``fair`` or ``fifo``; ``weights``: jobs per round by user id (default 1)."""

    order: str = "fair"
    weights: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"queue order must be one of {ORDERS}, not {self.order!r}")

    @property
    def fifo(self) -> bool:
        return self.order == "fifo"

    def weight(self, user_id: str) -> int:
        return max(1, int(self.weights.get(str(user_id), 1)))

    def round_for(self, user_id: str, current: int, newest: tuple[int, int] | None) -> int:
        """The round a new job of ``user_id`` joins; ``newest`` = (round, jobs in it) of the user's
        newest waiting round, ``None`` if the user has none waiting."""
        if self.fifo:
            return 0
        if newest is None or newest[0] < current:
            return current
        rnd, count = newest
        return rnd + 1 if count >= self.weight(user_id) else rnd
