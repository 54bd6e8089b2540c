"""Client sampling ([protocol] sample_fraction): which members take part in a round.

Each member is drawn for a round on its own, with probability `fraction` (Poisson sampling, as
DP-FedAvg's analysis assumes), by a hash of the study's seed, the round and the member's name in
the consortium. Nobody picks the sample and everybody can recompute it, member by member, from
the anchored config and the consortium's names: a member trains only in the rounds it is drawn
for, the aggregators reject an update from a member that was not drawn (NOT_DRAWN), and the
audit screens again to the same verdicts. The draw is public and known from the study's start:
it spreads the work over a large fleet and is no defence (a member cannot choose when it is
drawn, but anyone can tell).

Because members are drawn independently, a round draws a varying number of them; a semi or full
round that draws fewer than it needs to close can only wait, so `draw_problem` refuses a fraction
that makes such a round likely.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fedledger.config import Config

DRAW_DOMAIN = "FedLedger client draw v1"
TICKETS = 2**64                 # a seeded ticket is uniform on 0 .. TICKETS - 1
MAX_STALL_PROBABILITY = 1e-3    # of some round drawing too few (or too many) members, over the whole study
MAX_PARTICIPANTS = 128          # members a study contract's roster, or one anchored loose round, can name


def seeded_ticket(domain: str, seed: int, round: int, name: str) -> int:
    """A number uniform on 0 .. TICKETS - 1 for (`domain`, study seed, round, member name):
    the first 8 bytes of their SHA-256, so that anyone can draw it again."""
    return int.from_bytes(hashlib.sha256(f"{domain}|{seed}|{round}|{name}".encode()).digest()[:8], "big")


@dataclass(frozen=True)
class ClientDraw:
    """Which members take part in which round: each is drawn with probability `fraction` by a
    hash of the study's seed, the round and the member's name in the consortium (the names are
    on chain; addresses are not used, so that a seeded study draws the same members in any
    runtime, with any keys)."""
    fraction: float = 1.0
    seed: int = 0
    names: Mapping[str, str] = field(default_factory=dict)    # address -> the member's consortium name

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", {address.lower(): name for address, name in self.names.items()})

    @classmethod
    def of(cls, config: Mapping[str, Any], names: Mapping[str, str]) -> ClientDraw:
        """The draw of a study config given as plain data (Config.to_dict(), or the anchored
        config an auditor reads), with the consortium's names (address -> name)."""
        return cls(float(config.get("protocol", {}).get("sample_fraction", 1.0)),
                   int(config.get("study", {}).get("seed", 0)), names)

    def drawn(self, round: int, member: str) -> bool:
        """Whether `member` (an address) takes part in `round`; a member whose name is not
        known is never drawn, unless everyone takes part."""
        if self.fraction >= 1.0:
            return True
        name = self.names.get(member.lower())
        if name is None:
            return False
        return seeded_ticket(DRAW_DOMAIN, self.seed, round, name) < self.fraction * TICKETS

    def members(self, round: int, members: Iterable[str]) -> list[str]:
        """The `members` drawn for `round`, in the order given."""
        return [m for m in members if self.drawn(round, m)]


def _binomial_pmf(n: int, p: float, k: int) -> float:
    if p <= 0.0 or p >= 1.0:
        return float(k == (n if p >= 1.0 else 0))
    return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                    + k * math.log(p) + (n - k) * math.log1p(-p))


def _some_round(per_round: float, rounds: int) -> float:
    return 1.0 - (1.0 - min(per_round, 1.0)) ** rounds


def stall_probability(fraction: float, members: int, needed: int, rounds: int) -> float:
    """The probability that some round of `rounds` draws fewer than `needed` of `members`."""
    return _some_round(sum(_binomial_pmf(members, fraction, k) for k in range(min(needed, members + 1))), rounds)


def overflow_probability(fraction: float, members: int, limit: int, rounds: int) -> float:
    """The probability that some round of `rounds` draws more than `limit` of `members`."""
    return _some_round(sum(_binomial_pmf(members, fraction, k) for k in range(limit + 1, members + 1)), rounds)


def draw_problem(cfg: Config, members: int) -> str | None:
    """Why the study's rounds cannot take part as drawn from `members` (None when they can). A
    semi or full study's roster holds at most MAX_PARTICIPANTS members, and a round needs
    min_participants commitments to close: one that draws fewer waits for ever. A loose round
    that gets no update ends empty, but one anchored round names at most MAX_PARTICIPANTS."""
    fraction, rounds, loose = cfg.protocol.sample_fraction, cfg.study.rounds, cfg.study.architecture == "loose"
    if not loose and members > MAX_PARTICIPANTS:
        return (f"a {cfg.study.architecture} study's contract holds at most {MAX_PARTICIPANTS} members, "
                f"this one has {members}: use architecture = \"loose\" for a larger fleet")
    if loose:
        p = overflow_probability(fraction, members, MAX_PARTICIPANTS, rounds)
        if p > MAX_STALL_PROBABILITY:
            return (f"[protocol] sample_fraction = {fraction} of {members} members draws more than the "
                    f"{MAX_PARTICIPANTS} updates one anchored round can name in some round of {rounds} with "
                    f"probability {p:.2g}: lower sample_fraction")
        return None
    needed = min(cfg.protocol.min_participants, members)
    p = stall_probability(fraction, members, needed, rounds)
    if p <= MAX_STALL_PROBABILITY:
        return None
    return (f"[protocol] sample_fraction = {fraction} draws fewer than the {needed} update(s) a round needs "
            f"from {members} members in some round of {rounds} with probability {p:.2g} (such a round can only "
            f"wait): raise sample_fraction, or sample only in larger consortia")
