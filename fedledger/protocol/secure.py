"""Secure aggregation in the round protocol ([privacy] secure_aggregation = "secagg").

A round runs the four steps of `fedledger.privacy.secagg` around the usual commitment:
1. every taking-part member advertises its round keys on chain (`advertise_keys`);
2. it seals its secret shares for its holders, stores them and logs their digest (step SHARES);
   every member opens the shares meant for it;
3. it trains, masks its sample-weighted fixed-point parameters and commits the masked vector
   as its update (a plain commitment: the digest of the masked artifact and its sample count);
4. once the updates are in, every member whose update passed screening reveals its shares of
   the senders' self-mask seeds and of the dropped members' mask keys (step REVEAL).
The aggregator unmasks the sum and aggregates it (`Strategy.aggregate_sum`), which gives the
same bytes as aggregating the plain updates. Everything the unmasking used is on chain or in the
store, named in the manifest, so `audit verify` redoes it.

The chain authenticates the messages (from each member's own account), so an aggregator cannot
substitute keys. With the ledger off, a `LocalBoard` stands in for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ContextManager

import numpy as np

from fedledger.aggregation import Strategy
from fedledger.aggregation import fixedpoint as fx
from fedledger.chain.secagg import REVEAL, SHARES
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
from fedledger.protocol.homomorphic import SCHEME as HOMOMORPHIC
from fedledger.protocol.homomorphic import HomomorphicRecord
from fedledger.protocol.messages import RoundTask
from fedledger.store import ArtifactStore
from fedledger.validation import (
    Candidate,
    Reason,
    Rejection,
    ValidationRules,
    screen_updates,
)
from fedledger.validation.screen import screen_protected, unloadable

SCHEME = "secagg/1"
MASKED = "masked"   # the tensor name of a masked update artifact


class LocalBoard:
    """The secure-aggregation messages of a study run with the ledger off: what the contract
    would log, kept in memory (same methods as fedledger.chain.secagg.SecAggBoard)."""

    def __init__(self) -> None:
        self._keys: dict[int, dict[str, tuple[bytes, bytes]]] = {}
        self._posts: dict[tuple[int, int], dict[str, str]] = {}

    def advertise_keys(self, member: Any, round: int, cipher_key: bytes, mask_key: bytes) -> None:
        self._keys.setdefault(round, {}).setdefault(member.address, (cipher_key, mask_key))

    def post_secagg(self, member: Any, round: int, step: int, digest: str) -> None:
        self._posts.setdefault((round, step), {}).setdefault(member.address, digest)

    def advertised_keys(self, round: int) -> dict[str, tuple[bytes, bytes]]:
        return dict(self._keys.get(round, {}))

    def secagg_posts(self, round: int, step: int) -> dict[str, str]:
        return dict(self._posts.get((round, step), {}))


def round_context(task: RoundTask) -> bytes:
    """What binds every key, mask and the graph to one study and round."""
    return f"fedledger {SCHEME}|{task.chain_id}|{task.ledger.lower()}|{task.round}".encode()


def mask_graph(members: Sequence[str], context: bytes) -> tuple[MaskGraph, int]:
    """The round's mask graph over the members that advertised keys, and the share threshold:
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


class SecureParty:
    """One member's side of one round's secure aggregation (its secrets never leave it)."""

    def __init__(self, account: Any, task: RoundTask) -> None:
        self.account = account
        self.task = task
        self.member = SecAggMember(account.address, round_context(task))

    def advertise(self, board: Any) -> None:
        keys = self.member.public_keys()
        board.advertise_keys(self.account, self.task.round, keys.cipher_key, keys.mask_key)

    def share(self, board: Any, store: ArtifactStore) -> None:
        """Seal this member's shares for its holders among the advertised members, store, log."""
        roster = _roster(board.advertised_keys(self.task.round))
        graph, threshold = mask_graph([k.member for k in roster], self.member.context)
        sealed = self.member.share_secrets(roster, threshold, graph)
        board.post_secagg(self.account, self.task.round, SHARES,
                          store.put_json({m: s.hex() for m, s in sorted(sealed.items())}))

    def receive(self, board: Any, store: ArtifactStore) -> list[str]:
        """Open the shares meant for this member (its own included); returns who shared, the
        members to mask with. Shares that cannot be had or opened are left out: the secrets
        they belong to can still be rebuilt from the other holders'."""
        posts = board.secagg_posts(self.task.round, SHARES)
        me = self.account.address
        for sender, digest in posts.items():
            try:
                sealed = store.get_json(digest).get(me)
                if sealed is not None:
                    self.member.receive_share(sender, bytes.fromhex(sealed))
            except (StoreError, SecAggError, ValueError, AttributeError, TypeError):
                continue
        return list(posts)

    def masked_update(self, params: np.ndarray, num_samples: int, peers: Sequence[str], store: ArtifactStore) -> str:
        """Store this member's masked weighted parameters; their digest is its update."""
        masked = self.member.mask(weighted_input(params, num_samples), peers)
        return store.put_arrays({MASKED: masked.view(np.int64)})

    def reveal(self, board: Any, store: ArtifactStore, senders: Sequence[str], dropped: Sequence[str]) -> None:
        answer = self.member.reveal(senders, dropped)
        board.post_secagg(self.account, self.task.round, REVEAL, store.put_json(
            {m: [kind, shamir.encode(share).hex()] for m, (kind, share) in sorted(answer.items())}))


def run_masking(nodes: Sequence[Any], task: RoundTask, board: Any, commits: Callable[[int], bool],
                batch: Callable[[], ContextManager[Any]] = nullcontext) -> tuple[list[Any], dict[str, SecureParty]]:
    """Steps 1 to 3 for the nodes that can take part: keys, shares, masked updates. Returns the
    signed updates of those that commit (`commits(index)`; the others drop out after sharing)
    and every member's party, for the reveal. `batch`: the study's batch of transactions."""
    by_address = {n.address: n for n in nodes}
    parties = {n.address: SecureParty(n.account, task) for n in nodes if n.can_take_part()}
    with batch():
        for party in parties.values():
            party.advertise(board)
    with batch():
        for address, party in parties.items():
            party.share(board, by_address[address].store)
    updates = []
    for index, node in enumerate(nodes):
        if node.address in parties and commits(index):
            party = parties[node.address]
            peers = party.receive(board, node.store)
            updates.append(node.train(task, lambda params, n, store: party.masked_update(params, n, peers, store)))
    return updates, parties


def reveal_masks(parties: Mapping[str, SecureParty], board: Any, store: ArtifactStore, task: RoundTask,
                 senders: Sequence[str], batch: Callable[[], ContextManager[Any]] = nullcontext) -> None:
    """Step 4: every sender reveals its shares of the senders' self-mask seeds and of the mask
    keys of the members that shared but whose updates are not aggregated."""
    dropped = [m for m in board.secagg_posts(task.round, SHARES) if m not in senders]
    with batch():
        for member in senders:
            if member in parties:
                parties[member].reveal(board, store, senders, dropped)


def _roster(keys: Mapping[str, tuple[bytes, bytes]]) -> list[PublicKeys]:
    return [PublicKeys(m, cipher, mask) for m, (cipher, mask) in keys.items()]


def screen_round(store: ArtifactStore, task: RoundTask, candidates: Sequence[Candidate], rules: ValidationRules,
                 excluded: Mapping[str, Rejection] | None = None, scheme: Any | None = None
                 ) -> tuple[list[Candidate], list[Rejection]]:
    """A round's screening, for every architecture: `screen_updates` for plain updates; under
    secure aggregation (`scheme`: Masking or Homomorphic), what its updates allow to be checked."""
    if scheme is None:
        return screen_updates(store, store.get_params(task.global_model), candidates, rules, excluded)
    return scheme.screen(store, task, candidates, rules.min_aggregated)


def screen_masked(store: ArtifactStore, size: int, candidates: Sequence[Candidate], shared: Sequence[str],
                  min_aggregated: int = 0) -> tuple[list[Candidate], list[Rejection]]:
    """What can be checked of masked updates: each is from a member that shared its secrets, and
    is a masked vector of the model's size (its values say nothing). The others are rejected as
    plain updates would be; `min_aggregated` as in ValidationRules."""
    return screen_protected(candidates, lambda c: _masked_problem(store, size, c, shared), min_aggregated)


def _masked_problem(store: ArtifactStore, size: int, c: Candidate, shared: Sequence[str]) -> Rejection | None:
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
class SecureRecord:
    """What the unmasking of a round used, as the manifest names it."""
    context: str                     # round_context, hex
    keys: dict[str, list[str]]       # member -> [cipher key, mask key] (hex), as advertised
    shares: dict[str, str]           # member -> digest of its sealed shares
    reveals: dict[str, str]          # sender -> digest of its revealed shares
    senders: list[str]
    dropped: list[str]

    def as_manifest(self) -> dict[str, Any]:
        return {"scheme": SCHEME, "context": self.context, "keys": self.keys, "shares": self.shares,
                "reveals": self.reveals, "senders": self.senders, "dropped": self.dropped}

    def aggregate(self, store: ArtifactStore, strategy: Strategy, global_params: np.ndarray,
                  entries: Sequence[Mapping[str, Any]], state: Mapping[str, np.ndarray]
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The round's new model and state from its masked entries (institution, update, num_samples)."""
        if sorted(e["institution"] for e in entries) != sorted(self.senders):
            raise SecAggError("the masked updates aggregated are not the record's senders")
        weighted_sum = unmask_round(store, {e["institution"]: e["update"] for e in entries}, self)
        total = sum(int(e["num_samples"]) for e in entries)
        return strategy.aggregate_sum(global_params, weighted_sum, total, state)

    @classmethod
    def from_manifest(cls, doc: Mapping[str, Any]) -> SecureRecord:
        """The record a manifest names; ValueError if it is malformed."""
        try:
            return cls(doc["context"], dict(doc["keys"]), dict(doc["shares"]), dict(doc["reveals"]),
                       list(doc["senders"]), list(doc["dropped"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed secure-aggregation record: {exc}") from None


def record_from_manifest(doc: Mapping[str, Any] | None) -> SecureRecord | HomomorphicRecord | None:
    """The secure-aggregation record a manifest names ("secure_aggregation"), by its scheme; None
    for a round without one; ValueError if it is malformed."""
    if doc is None:
        return None
    schemes = {SCHEME: SecureRecord, HOMOMORPHIC: HomomorphicRecord}
    scheme = doc.get("scheme") if isinstance(doc, Mapping) else None
    if scheme not in schemes:
        raise ValueError(f"unknown secure-aggregation scheme {scheme!r}")
    return schemes[scheme].from_manifest(doc)


def secure_record(board: Any, task: RoundTask, senders: Sequence[str]) -> SecureRecord:
    """The round's record, read from the board (the chain): who shared, who sent, who dropped."""
    keys = board.advertised_keys(task.round)
    shares = board.secagg_posts(task.round, SHARES)
    reveals = board.secagg_posts(task.round, REVEAL)
    return SecureRecord(round_context(task).hex(), {m: [c.hex(), k.hex()] for m, (c, k) in keys.items()},
                        shares, {m: d for m, d in reveals.items() if m in senders}, sorted(senders),
                        sorted(m for m in shares if m in keys and m not in senders))


def unmask_round(store: ArtifactStore, updates: Mapping[str, str], record: SecureRecord) -> np.ndarray:
    """The sum of the senders' weighted parameters (int64), from their masked updates (member ->
    digest) and the revealed shares the record names; SecAggError if it cannot be had."""
    context = bytes.fromhex(record.context)
    roster = [PublicKeys(m, bytes.fromhex(c), bytes.fromhex(k)) for m, (c, k) in record.keys.items()]
    graph, threshold = mask_graph([k.member for k in roster], context)
    masked = {m: store.get_arrays(updates[m])[MASKED].view(np.uint64) for m in record.senders}
    revealed = []
    for digest in record.reveals.values():
        answer = store.get_json(digest)
        try:
            revealed.append({m: (kind, shamir.decode(bytes.fromhex(share))) for m, (kind, share) in answer.items()})
        except (ValueError, TypeError) as exc:
            raise SecAggError(f"revealed shares {digest} are malformed: {exc}") from None
    shared = [k for k in roster if k.member in record.shares]
    return unmask_sum(masked, shared, revealed, threshold, context, graph)


class Masking:
    """Pairwise masking as the round runners use it: the steps around the commitment, the
    screening, and the record the aggregation and the audit use."""

    def __init__(self, board: Any) -> None:
        self.board = board
        self._parties: dict[str, SecureParty] = {}

    def updates(self, nodes: Sequence[Any], task: RoundTask, commits: Callable[[int], bool],
                batch: Callable[[], ContextManager[Any]] = nullcontext) -> list[Any]:
        """Keys, shares and masked updates (`run_masking`): the signed updates to commit."""
        made, self._parties = run_masking(nodes, task, self.board, commits, batch)
        return made

    def screen(self, store: ArtifactStore, task: RoundTask, candidates: Sequence[Candidate], min_aggregated: int
               ) -> tuple[list[Candidate], list[Rejection]]:
        return screen_masked(store, store.get_params(task.global_model).size, candidates,
                             list(self.board.secagg_posts(task.round, SHARES)), min_aggregated)

    def conclude(self, store: ArtifactStore, task: RoundTask, senders: Sequence[str],
                 batch: Callable[[], ContextManager[Any]] = nullcontext) -> None:
        """The senders reveal what unmasking their sum needs."""
        reveal_masks(self._parties, self.board, store, task, senders, batch)

    def record(self, store: ArtifactStore, task: RoundTask, senders: Sequence[str]) -> SecureRecord:
        return secure_record(self.board, task, senders)
