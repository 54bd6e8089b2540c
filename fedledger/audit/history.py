"""A chain-coordinated study's event history (contracts/rounds.vy and the contract's own
phase), indexed once: by round, and each member's recorded reputation and standing over time."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from fedledger.chain import INITIAL_REPUTATION

Events = Mapping[str, list[dict[str, Any]]]   # one round's events by name


def digest(value: bytes) -> str:
    """An event's bytes32 digest as the store names it."""
    return bytes(value).hex()


def result_of(event: Mapping[str, Any]) -> tuple[str, str, list[int]]:
    """The (model, manifest digest, reason codes) a committee result or a vote is for."""
    return digest(event["model"]), digest(event["manifest_digest"]), list(event["reasons"])


class History:
    """A study contract's events indexed once: by round, and each member's recorded
    reputation and standing over time (for the committee draws and vote weights)."""

    def __init__(self, events: Sequence[dict[str, Any]]) -> None:
        self.by_round: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        # member -> positions (chain_order) of its reputation changes, and the values after them
        self.positions: dict[str, list[Any]] = defaultdict(list)
        self.values: dict[str, list[int]] = defaultdict(list)
        # member -> positions of its suspensions and re-admissions, and whether each suspended it
        self.standing_positions: dict[str, list[Any]] = defaultdict(list)
        self.standing: dict[str, list[bool]] = defaultdict(list)
        for event in events:
            if "round_number" in event:
                self.by_round[event["round_number"]][event["event"]].append(event)
            if event["event"] == "ReputationChanged":
                self.positions[event["member"]].append(event["position"])
                self.values[event["member"]].append(event["after"])
            if event["event"] in ("MemberSuspended", "MemberReinstated"):
                self.standing_positions[event["member"]].append(event["position"])
                self.standing[event["member"]].append(event["event"] == "MemberSuspended")

    def reputation_at(self, member: str, point: Mapping[str, Any]) -> int:
        """Recorded reputation of `member` just before the event `point` (the changes themselves
        are checked against their rules by the replay)."""
        changes = bisect_left(self.positions[member], point["position"])
        return self.values[member][changes - 1] if changes else INITIAL_REPUTATION

    def suspended_at(self, member: str, point: Mapping[str, Any]) -> bool:
        """Whether `member` was suspended just before the event `point`."""
        changes = bisect_left(self.standing_positions[member], point["position"])
        return self.standing[member][changes - 1] if changes else False
