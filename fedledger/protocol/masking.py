"""Pairwise masking in the round protocol ([privacy] secure_aggregation = "secagg").

A round runs the four steps of `fedledger.privacy.secagg` around the usual commitment:
1. every taking-part member advertises its round keys on chain (`advertise_keys`);
2. once the key set is settled, it seals its secret shares for its holders and logs them, packed,
   on chain (step SHARES): a member that dies right after has still delivered them. Once the
   share set is settled, every member opens the shares meant for it;
3. it trains, masks its sample-weighted fixed-point parameters and commits the masked vector as
   its update (a plain commitment: the digest of the masked artifact and its sample count);
4. once the round's senders are known (the updates that passed screening), each sender logs the
   shares it reveals of the senders' self-mask seeds and of the dropped members' mask keys
   (step REVEAL).
The aggregator unmasks the sum and aggregates it (`Strategy.aggregate_sum`), which gives the
same bytes as aggregating the plain updates. Everything the unmasking used is on chain or in the
store, named in the manifest, so `audit verify` redoes it.

Members act at their own pace, so each set (keys, shares, reveals) is settled by one rule every
member and auditor applies alike to the chain's log: it is every expected member's message, or,
once `window` blocks have passed since the first one, the messages logged within that window.
The chain authenticates the messages (each from its member's own account), so an aggregator
cannot substitute keys. A member's round secrets live only in its process: one restarted in the
middle of a round drops out of it (which the scheme survives) and takes part again in the next.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from web3 import Web3

from fedledger.aggregation import Strategy
from fedledger.aggregation import fixedpoint as fx
from fedledger.chain.secagg import REVEAL, SHARES, Posted
from fedledger.errors import StoreError, UpdateRejected
from fedledger.privacy import (
    MaskGraph,
    PublicKeys,
    SecAggError,
    SecAggMember,
    secagg_plus_parameters,
    shamir,
    unmask_sum,
)
from fedledger.protocol.context import ACTED, MemberContext, Step, waiting
from fedledger.protocol.messages import RoundTask
from fedledger.protocol.sampling import ClientDraw
from fedledger.protocol.scheme import AggregationRecord, SitOut, UpdateScheme
from fedledger.store import ArtifactStore, sha256_hex
from fedledger.validation import Candidate, Reason, Rejection, ValidationRules
from fedledger.validation.screen import screen_protected, unloadable

SCHEME = "secagg/1"
MASKED = "masked"   # the tensor name of a masked update artifact
KINDS = ("seed", "key")   # what a revealed share is of: a sender's self-mask seed, a dropped member's mask key
ADDRESS, LENGTH = 20, 2   # bytes of a member's address and of a part's length in a packed message


def pack(parts: Mapping[str, bytes]) -> bytes:
    """One message for several members, as logged on chain: for each member, in address order,
    its 20-byte address, its part's length (2 bytes, big-endian) and the part."""
    return b"".join(bytes.fromhex(m[2:]) + len(part).to_bytes(LENGTH, "big") + part
                    for m, part in sorted(parts.items(), key=lambda item: item[0].lower()))


def unpack(data: bytes) -> dict[str, bytes]:
    """The parts of a packed message by member (checksum address); ValueError if malformed."""
    parts, i = {}, 0
    while i < len(data):
        if i + ADDRESS + LENGTH > len(data):
            raise ValueError("a packed message ends inside a part's header")
        member = Web3.to_checksum_address(data[i:i + ADDRESS])
        size = int.from_bytes(data[i + ADDRESS:i + ADDRESS + LENGTH], "big")
        i += ADDRESS + LENGTH
        if i + size > len(data) or member in parts:
            raise ValueError("a packed message's part runs past its end, or names a member twice")
        parts[member], i = data[i:i + size], i + size
    return parts


def round_context(task: RoundTask) -> bytes:
    """What binds every key, mask and the graph to one study and round."""
    return f"fedledger {SCHEME}|{task.chain_id}|{task.ledger.lower()}|{task.round}".encode()


def settled(posted: Sequence[Posted], expected: Collection[str], window: int, now: int
            ) -> tuple[dict[str, Any] | None, int | None]:
    """The messages that count (member -> value), once they are settled: every `expected`
    member's, or, from `window` blocks after the first one on, those logged within that window.
    Until then (None, the block from which time alone settles them)."""
    if not posted:
        return None, None
    cutoff = posted[0].block + window
    within = {p.member: p.value for p in posted if p.block <= cutoff}
    if set(expected) <= within.keys() or now > cutoff:
        return within, None
    return None, cutoff + 1


def mask_graph(members: Sequence[str], context: bytes) -> tuple[MaskGraph, int]:
    """The round's mask graph over the members of the key set, and the share threshold:
    SecAgg+'s sparse graph where it is sound for this many members, else the complete graph."""
    degree, threshold = secagg_plus_parameters(len(members))
    graph = (MaskGraph.complete(members) if degree >= len(members) - 1
             else MaskGraph.harary(members, degree, context))
    return graph, threshold


def weighted_input(params: np.ndarray, num_samples: int) -> np.ndarray:
    """What a member masks: its parameters on the fixed-point grid times its sample count (int64;
    within 2**62 for parameters within the bound, which the sum of a round's weights keeps)."""
    if not np.all(np.abs(params) <= fx.MAX_ABS):
        raise UpdateRejected(f"a parameter is beyond the fixed-point bound {fx.MAX_ABS:g}")
    return fx.to_fixed(params) * np.int64(num_samples)


class _Party:
    """One member's side of one round (its secrets never leave it)."""

    def __init__(self, ctx: MemberContext, task: RoundTask) -> None:
        self.member = SecAggMember(ctx.address, round_context(task))
        self.shared = False
        self.peers: list[str] | None = None     # who shared, once this member opened their shares
        self.revealed = False


class Masking(UpdateScheme):
    """Pairwise masking (see the module docstring)."""

    name = "secagg"
    preparation_windows = 2    # the key set, then the share set

    def __init__(self, board: Any, window: int, draw: ClientDraw = ClientDraw()) -> None:
        super().__init__(board, window, draw)
        self._parties: dict[int, _Party] = {}    # round -> this member's party

    # --- the sets every member and auditor settles alike --------------------------------------

    def key_set(self, round: int, expected: Collection[str]) -> tuple[dict[str, Any] | None, int | None]:
        return settled(self.board.key_adverts(round), expected, self.window, self.board.block_number())

    def share_set(self, round: int, keys: Collection[str]) -> tuple[dict[str, Any] | None, int | None]:
        posted = [p for p in self.board.data_posts(round, SHARES) if p.member in keys]
        return settled(posted, keys, self.window, self.board.block_number())

    def settled_keys(self, round: int) -> dict[str, Any]:
        """The key set of a round whose commitments are in (so it is settled): member -> keys."""
        keys, _ = settled(self.board.key_adverts(round), (), self.window, self.board.block_number())
        return keys or {}

    def settled_shares(self, round: int) -> dict[str, bytes]:
        """The share set of a round whose commitments are in: member -> its sealed shares, packed."""
        shares, _ = self.share_set(round, self.settled_keys(round))
        return shares or {}

    # --- a member's side ----------------------------------------------------------------------

    def prepare(self, ctx: MemberContext, task: RoundTask, expected: Sequence[str]) -> Step | None:
        r, me = task.round, ctx.address
        party = self._parties.get(r)
        if me not in {p.member for p in self.board.key_adverts(r)}:
            if party is not None:
                return waiting(f"round {r}: my secure-aggregation keys to be logged")
            party = self._parties[r] = _Party(ctx, task)
            keys = party.member.public_keys()
            ctx.send(f"round {r}: advertised my secure-aggregation keys",
                     lambda: self.board.advertise_keys(ctx.account, r, keys.cipher_key, keys.mask_key))
            return ACTED
        if party is None:
            raise SitOut(f"round {r}: my secure-aggregation keys were advertised by an earlier run of this node, "
                         "whose secrets are gone")
        keys, wake = self.key_set(r, expected)
        if keys is None:
            return waiting(f"round {r}: the other members' secure-aggregation keys", wake)
        if me not in keys:
            raise SitOut(f"round {r}: my keys were logged after the key set was settled")
        if not party.shared:
            roster = [PublicKeys(m, *k) for m, k in keys.items()]
            try:
                graph, threshold = mask_graph(list(keys), party.member.context)
            except SecAggError as exc:   # too few keys to mask with (members drawn or dropped out)
                raise SitOut(f"round {r}: {len(keys)} members' keys are too few to mask with ({exc})") from None
            sealed = pack(party.member.share_secrets(roster, threshold, graph))
            ctx.send(f"round {r}: shared my secrets",
                     lambda: self.board.post_secagg_data(ctx.account, r, SHARES, sealed))
            party.shared = True
            return ACTED
        shares, wake = self.share_set(r, keys)
        if shares is None:
            return waiting(f"round {r}: the other members' secret shares", wake)
        if me not in shares:
            raise SitOut(f"round {r}: my shares were logged after the share set was settled")
        if party.peers is None:
            party.peers = self._receive(ctx, party, shares)
        return None

    @staticmethod
    def _receive(ctx: MemberContext, party: _Party, shares: Mapping[str, bytes]) -> list[str]:
        """Open the shares meant for this member (its own included); returns who shared, the
        members to mask with. Shares that cannot be opened are left out: the secrets they
        belong to can still be rebuilt from the other holders'."""
        for sender, data in shares.items():
            try:
                sealed = unpack(data).get(ctx.address)
                if sealed is not None:
                    party.member.receive_share(sender, sealed)
            except (SecAggError, ValueError) as exc:
                ctx.log.warning("the shares of %s cannot be opened: %s", ctx.name(sender), exc)
        return list(shares)

    def protect(self, ctx: MemberContext, task: RoundTask, params: np.ndarray, num_samples: int) -> str:
        party = self._parties[task.round]
        masked = party.member.mask(weighted_input(params, num_samples), party.peers)
        return ctx.store.put_arrays({MASKED: masked.view(np.int64)})

    def conclude(self, ctx: MemberContext, task: RoundTask, notice: Mapping[str, Any]) -> Step | None:
        """A sender reveals its shares of the senders' self-mask seeds and of the mask keys of
        the members that shared but whose updates are not aggregated."""
        r, party = task.round, self._parties.get(task.round)
        senders = _members(notice.get("senders"))
        if party is None or party.revealed or ctx.address not in senders:
            return None
        dropped = [m for m in self.settled_shares(r) if m not in senders]
        try:
            answer = party.member.reveal(senders, dropped)
        except SecAggError as exc:     # asked to unmask someone: refuse, and say so
            party.revealed = True
            ctx.log.error("round %d: refused to reveal: %s", r, exc)
            return None
        revealed = pack({m: bytes([KINDS.index(kind)]) + shamir.encode(share) for m, (kind, share) in answer.items()})
        ctx.send(f"round {r}: revealed my shares for unmasking",
                 lambda: self.board.post_secagg_data(ctx.account, r, REVEAL, revealed))
        party.revealed = True
        self._parties = {n: p for n, p in self._parties.items() if n >= r}   # earlier rounds' secrets: done with
        return ACTED

    # --- an aggregator's (and the auditor's) side ---------------------------------------------

    def check_updates(self, store: ArtifactStore, task: RoundTask, candidates: Sequence[Candidate],
                      rules: ValidationRules, excluded: Mapping[str, Rejection] | None = None
                      ) -> tuple[list[Candidate], list[Rejection]]:
        """What can be checked of masked updates: each is from a member that shared its secrets,
        and is a masked vector of the model's size (its values say nothing). The others are
        rejected as plain updates would be; DP-FedAvg's `min_aggregated` applies."""
        size = store.get_params(task.global_model).size
        shared = self.settled_shares(task.round)
        return screen_protected(candidates, lambda c: _masked_problem(store, size, c, shared), rules.min_aggregated)

    def load(self, store: ArtifactStore, digest: str) -> Any:
        return store.get_arrays(digest)

    def record(self, store: ArtifactStore, task: RoundTask, accepted: Sequence[Candidate]) -> MaskingRecord | Step:
        """The round's record, once the senders' reveals are settled."""
        r, senders = task.round, [c.institution for c in accepted]
        reveals, wake = settled([p for p in self.board.data_posts(r, REVEAL) if p.member in senders], senders,
                                self.window, self.board.block_number())
        if reveals is None:
            return waiting(f"round {r}: the senders' reveals", wake)
        shares = self.settled_shares(r)
        # the reveals go into the store too, where the manifest names them for the audit's unmasking
        return MaskingRecord(round_context(task).hex(), hex_keys(self.settled_keys(r)), digests(shares),
                             {m: store.put(data) for m, data in reveals.items()}, sorted(senders),
                             sorted(m for m in shares if m not in senders))


def digests(messages: Mapping[str, bytes]) -> dict[str, str]:
    """Messages logged on chain as records name them: member -> sha-256 of its message."""
    return {m: sha256_hex(data) for m, data in messages.items()}


def hex_keys(keys: Mapping[str, tuple[bytes, bytes]]) -> dict[str, list[str]]:
    """A key set as records name it: member -> [cipher key, mask key] in hex."""
    return {m: [c.hex(), k.hex()] for m, (c, k) in keys.items()}


def _members(value: Any) -> list[str]:
    """A list of member addresses from an untrusted notice ([] if it is not one)."""
    return list(value) if isinstance(value, list) and all(isinstance(m, str) for m in value) else []


def _masked_problem(store: ArtifactStore, size: int, c: Candidate, shared: Collection[str]) -> Rejection | None:
    try:
        arrays = store.get_arrays(c.update)
    except StoreError as exc:
        return unloadable(c, exc)
    if set(arrays) != {MASKED} or arrays[MASKED].dtype != np.int64 or arrays[MASKED].shape != (size,):
        return Rejection.of(c, Reason.WRONG_LAYOUT, f"not one int64 vector {MASKED!r} of the model's {size} "
                                                     "parameters")
    if c.institution not in shared:
        return Rejection.of(c, Reason.INVALID_FORMAT, "a masked update from a member that shared no secrets")
    return None


@dataclass(frozen=True)
class MaskingRecord(AggregationRecord):
    """What the unmasking of a round used, as the manifest names it."""
    context: str                     # round_context, hex
    keys: dict[str, list[str]]       # member -> [cipher key, mask key] (hex): the key set
    shares: dict[str, str]           # member -> sha-256 of its sealed shares as logged: the share set
    reveals: dict[str, str]          # sender -> digest of its revealed shares as logged (in the store)
    senders: list[str]
    dropped: list[str]

    scheme: ClassVar[str] = SCHEME

    def as_manifest(self) -> dict[str, Any]:
        return {"scheme": SCHEME, "context": self.context, "keys": self.keys, "shares": self.shares,
                "reveals": self.reveals, "senders": self.senders, "dropped": self.dropped}

    @classmethod
    def from_manifest(cls, doc: Mapping[str, Any]) -> MaskingRecord:
        """The record a manifest names; ValueError if it is malformed."""
        try:
            return cls(doc["context"], dict(doc["keys"]), dict(doc["shares"]), dict(doc["reveals"]),
                       list(doc["senders"]), list(doc["dropped"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed secure-aggregation record: {exc}") from None

    def aggregate(self, store: ArtifactStore, strategy: Strategy, global_params: np.ndarray,
                  entries: Sequence[Mapping[str, Any]], state: Mapping[str, np.ndarray]
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if sorted(e["institution"] for e in entries) != sorted(self.senders):
            raise SecAggError("the masked updates aggregated are not the record's senders")
        weighted_sum = self.unmask(store, {e["institution"]: e["update"] for e in entries})
        total = sum(int(e["num_samples"]) for e in entries)
        return strategy.aggregate_sum(global_params, weighted_sum, total, state)

    def unmask(self, store: ArtifactStore, updates: Mapping[str, str]) -> np.ndarray:
        """The sum of the senders' weighted parameters (int64), from their masked updates
        (member -> digest) and the revealed shares; SecAggError if it cannot be had."""
        context = bytes.fromhex(self.context)
        roster = [PublicKeys(m, bytes.fromhex(c), bytes.fromhex(k)) for m, (c, k) in self.keys.items()]
        graph, threshold = mask_graph([k.member for k in roster], context)
        masked = {m: store.get_arrays(updates[m])[MASKED].view(np.uint64) for m in self.senders}
        revealed = []
        for digest in self.reveals.values():
            try:
                revealed.append({m: (KINDS[part[0]], shamir.decode(part[1:])) for m, part in unpack(store.get(digest)).items()})
            except (ValueError, IndexError) as exc:
                raise SecAggError(f"revealed shares {digest} are malformed: {exc}") from None
        shared = [k for k in roster if k.member in self.shares]
        return unmask_sum(masked, shared, revealed, threshold, context, graph)
