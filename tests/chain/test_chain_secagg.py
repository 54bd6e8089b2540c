"""secagg_board.vy in every study contract: LooseStudy (any active institution of the
consortium) and SemiStudy / FullStudy (an active roster member, through rounds.vy).
A poster advertises its X25519 keys (KeysAdvertised), logs its sealed shares and its revealed
shares as they are (SecAggData, post_secagg_data: steps SHARES and REVEAL) and the digests of
its CKKS material (SecAggPosted, post_secagg: steps CKKS_CONTEXT to CKKS_SUM) for the open round,
in any of its phases; the SecAggBoard wrapper reads them back, the first message per member
counting. Everything else is refused with its reason, storing and logging nothing.

Everything runs on the real embedded EVM.
"""

import hashlib
import re
from dataclasses import dataclass

import pytest
from eth_account.signers.local import LocalAccount
from web3.exceptions import MismatchedABI

from fedledger.chain import EmbeddedChain, Phase
from fedledger.chain.artifacts import CONTRACTS_DIR
from fedledger.chain.records import NO_DIGEST
from fedledger.chain.secagg import CKKS_CONTEXT, CKKS_KEYS, CKKS_SUM, MAX_DATA, REVEAL, SHARES, Posted
from fedledger.errors import TransactionReverted

from .conftest import Study, digest, set_up_study
from .test_chain_reputation import play_round
from .test_chain_rounds import (
    KINDS,
    OUTLIER,
    Run,
    deploy,
    make_terms,
    refused,
    set_up_consortium,
    vote,
)

CONTRACTS = ("ledger", *KINDS)
FUNCTIONS = ("advertise_keys", "post_secagg", "post_secagg_data")
DATA_STEPS = (SHARES, REVEAL)   # logged as they are (post_secagg_data); the CKKS steps as a digest (post_secagg)
SUSPEND_AT_ONCE = 100      # suspension threshold = the initial reputation: one rejection suspends
HOLDERS = 4                # the gas test's round: each member shares with, and reveals for, four holders
SEALED_SHARE, REVEALED_SHARE = 186, 90   # bytes a holder takes in a packed message, header included
GAS_BOUND = {   # per kind of message, about 25% over what the three contracts use (~47k, 80k, 71k, 47k):
    "advertise_keys": 60_000,               # a data post pays ~15k more than a digest before its first byte
    "post_secagg_data (shares)": 100_000,   # (the memory of its Bytes[MAX_DATA] buffers), then ~25 a byte
    "post_secagg_data (reveal)": 90_000,
    "post_secagg (CKKS digest)": 60_000,
}


def key(tag: str) -> bytes:
    """A 32-byte stand-in for an X25519 public key."""
    return hashlib.sha256(f"key {tag}".encode()).digest()


def sealed(tag: str, size: int) -> bytes:
    """`size` bytes that look like ciphertext (no zero bytes to speak of: calldata at full price)."""
    return hashlib.shake_256(f"sealed {tag}".encode()).digest(size)


# --- harness -----------------------------------------------------------------------------------


@dataclass
class Board:
    """A study contract of `kind` with round 1 open; `members` may post (the roster, for the
    round contracts; for the ledger, the institutions the tests post with)."""
    kind: str
    s: Study
    study: object
    members: list[LocalAccount]

    @property
    def label(self) -> str:
        return self.study.contract_name

    def finish_round(self, rejected=()) -> None:
        """Finalize (anchor) the open round, rejecting the updates of `rejected`."""
        round = self.study.round_count() + 1
        if self.kind == "ledger":
            bad = {m.address for m in rejected}
            self.study.anchor_round(self.s.coordinator, self.s.record(
                round, digest(f"model {round - 1}"), [m.address for m in self.members if m.address not in bad],
                [(address, digest(f"bad {round}"), OUTLIER) for address in sorted(bad)]))
        else:
            play_round(Run(self.s, self.study, self.members), rejected=rejected)
        assert self.study.round_count() == round


def make_board(backend, kind: str, *, institutions=4, roster=4, suspension_threshold=0) -> Board:
    """A started study of `kind` over a consortium of `institutions`; the round contracts' roster
    is the first `roster` of them."""
    if kind == "ledger":
        s = set_up_study(backend, institutions=institutions, suspension_threshold=suspension_threshold)
        return Board(kind, s, s.ledger, list(s.institutions[:roster]))
    s = set_up_consortium(backend, institutions)
    members = list(s.institutions[:roster])
    terms = make_terms(s, [m.address for m in members], suspension_threshold=suspension_threshold)
    return Board(kind, s, deploy(s, kind, terms), members)


def advertise(board: Board, member, round: int, tag: str | None = None, *, cipher=None, mask=None):
    tag = member.address if tag is None else tag
    return board.study.advertise_keys(member, round, key(f"cipher {tag}") if cipher is None else cipher,
                                      key(f"mask {tag}") if mask is None else mask)


def post_data(board: Board, member, round: int, step: int = SHARES, tag: str | None = None, *, data=None):
    """`member` logs `data` (by default b"step {step} {tag}") at `step` (post_secagg_data)."""
    tag = member.address if tag is None else tag
    return board.study.post_secagg_data(member, round, step, f"step {step} {tag}".encode() if data is None else data)


def post_digest(board: Board, member, round: int, step: int = CKKS_CONTEXT, tag: str | None = None, *, value=None):
    """`member` logs the digest `value` (by default of "step {step} {tag}") at `step` (post_secagg)."""
    tag = member.address if tag is None else tag
    return board.study.post_secagg(member, round, step, digest(f"step {step} {tag}") if value is None else value)


def post(board: Board, member, round: int, step: int = SHARES, tag: str | None = None):
    """`member` posts at `step` as the board takes it: data for SHARES and REVEAL, a digest for
    the CKKS steps."""
    return (post_data if step in DATA_STEPS else post_digest)(board, member, round, step, tag)


def data_of(board: Board, round: int, step: int) -> dict[str, bytes]:
    """Each member's data logged at `step` in `round` (its first counts), in chain order."""
    return {p.member: p.value for p in board.study.data_posts(round, step)}


def send(board: Board, fn: str, member, round: int):
    """`member` calls `fn` (one of FUNCTIONS) for `round` with a valid payload."""
    return {"advertise_keys": advertise, "post_secagg": post_digest, "post_secagg_data": post_data}[fn](
        board, member, round)


@pytest.fixture(params=CONTRACTS)
def board(request, embedded) -> Board:
    return make_board(embedded, request.param)


def test_steps_match_the_contract():
    source = (CONTRACTS_DIR / "secagg_board.vy").read_text()
    steps = dict(re.findall(r"^(\w+): constant\(uint8\) = (\d+)", source, re.MULTILINE))
    assert steps == {"SHARES": str(SHARES), "REVEAL": str(REVEAL), "CKKS_CONTEXT": str(CKKS_CONTEXT),
                     "CKKS_KEYS": str(CKKS_KEYS), "CKKS_SUM": str(CKKS_SUM)}
    assert (SHARES, REVEAL, CKKS_CONTEXT, CKKS_KEYS, CKKS_SUM) == (1, 2, 3, 4, 5)
    assert re.findall(r"^MAX_DATA: constant\(uint256\) = (\d+)", source, re.MULTILINE) == [str(MAX_DATA)]
    assert re.findall(r"^\s+data: Bytes\[(\w+)\]$", source, re.MULTILINE) == ["MAX_DATA"]   # SecAggData's bound


# --- accepted messages ---------------------------------------------------------------------------


def test_keys_data_and_digests_are_logged_as_posted(board):
    a, b = board.members[:2]
    keys = advertise(board, a, 1)
    shares = post(board, a, 1, SHARES)
    reveal = post(board, b, 1, REVEAL)
    context = post(board, a, 1, CKKS_CONTEXT)

    assert board.study.events("KeysAdvertised") == [
        {"round_number": 1, "member": a.address, "cipher_key": key(f"cipher {a.address}"),
         "mask_key": key(f"mask {a.address}"), "block": keys["blockNumber"]}]
    assert board.study.events("SecAggData") == [
        {"round_number": 1, "member": a.address, "step": SHARES, "data": f"step 1 {a.address}".encode(),
         "block": shares["blockNumber"]},
        {"round_number": 1, "member": b.address, "step": REVEAL, "data": f"step 2 {b.address}".encode(),
         "block": reveal["blockNumber"]}]
    assert board.study.events("SecAggPosted") == [
        {"round_number": 1, "member": a.address, "step": CKKS_CONTEXT,
         "digest": bytes.fromhex(digest(f"step 3 {a.address}")), "block": context["blockNumber"]}]
    for receipt, name in ((keys, "KeysAdvertised"), (shares, "SecAggData"), (reveal, "SecAggData"),
                          (context, "SecAggPosted")):
        assert receipt["status"] == 1
        assert [e["event"] for e in board.study.all_events() if e["block"] == receipt["blockNumber"]] == [name]

    assert board.study.advertised_keys(1) == {a.address: (key(f"cipher {a.address}"), key(f"mask {a.address}"))}
    assert board.study.data_posts(1, SHARES) == [
        Posted(a.address, f"step 1 {a.address}".encode(), shares["blockNumber"])]
    assert board.study.data_posts(1, REVEAL) == [
        Posted(b.address, f"step 2 {b.address}".encode(), reveal["blockNumber"])]
    assert board.study.secagg_posts(1, CKKS_CONTEXT) == {a.address: digest(f"step 3 {a.address}")}
    assert board.study.posts(1, SHARES) == board.study.posts(1, REVEAL) == []        # each read keeps to its steps
    assert board.study.data_posts(1, CKKS_CONTEXT) == [] and board.study.secagg_posts(1, CKKS_KEYS) == {}
    assert board.study.round_count() == 0                      # the board stores nothing, moves nothing


def test_the_first_message_per_member_counts_in_chain_order(board):
    a, b, c = board.members[:3]
    advertise(board, b, 1, "first")
    advertise(board, a, 1, "first")
    second = advertise(board, b, 1, "second")                  # logged, but b's first keys count
    advertise(board, c, 1, "first", cipher=key("shared"), mask=key("shared"))   # any non-empty keys
    assert len(board.study.events("KeysAdvertised", 1)) == 4
    assert list(board.study.advertised_keys(1).items()) == [
        (b.address, (key("cipher first"), key("mask first"))), (a.address, (key("cipher first"), key("mask first"))),
        (c.address, (key("shared"), key("shared")))]
    adverts = board.study.key_adverts(1)      # with the block each landed in: latecomers can be told apart
    assert [(p.member, p.block) for p in adverts][-1] == (c.address, second["blockNumber"] + 1)
    assert [p.member for p in adverts] == [b.address, a.address, c.address]

    early = post(board, c, 1, REVEAL, "early")                # a reveal before any shares: logged as it is
    post(board, b, 1, SHARES, "b first")
    post(board, a, 1, SHARES, "a first")
    post(board, b, 1, SHARES, "b second")
    post(board, b, 1, REVEAL, "b first")
    post(board, b, 1, REVEAL, "b second")
    post(board, a, 1, CKKS_SUM, "a first")
    post(board, a, 1, CKKS_SUM, "a second")
    post(board, c, 1, CKKS_SUM, "c first")
    assert len(board.study.events("SecAggData", 1)) == 6 and len(board.study.events("SecAggPosted", 1)) == 3
    assert list(data_of(board, 1, SHARES).items()) == [(b.address, b"step 1 b first"), (a.address, b"step 1 a first")]
    assert list(data_of(board, 1, REVEAL).items()) == [(c.address, b"step 2 early"), (b.address, b"step 2 b first")]
    assert board.study.data_posts(1, REVEAL)[0].block == early["blockNumber"]
    assert list(board.study.secagg_posts(1, CKKS_SUM).items()) == [
        (a.address, digest("step 5 a first")), (c.address, digest("step 5 c first"))]


def test_messages_are_read_per_round(board):
    a, b = board.members[:2]
    advertise(board, a, 1, "round 1")
    post(board, a, 1, SHARES, "round 1")
    post(board, a, 1, REVEAL, "round 1")
    post(board, a, 1, CKKS_SUM, "round 1")
    board.finish_round()
    for fn in FUNCTIONS:                                       # the finalized round is closed to the board
        with refused(f"{board.label}.{fn}", "not the open round"):
            send(board, fn, a, 1)

    advertise(board, a, 2, "round 2")
    advertise(board, b, 2, "round 2")
    post(board, b, 2, SHARES, "round 2")
    post(board, b, 2, CKKS_KEYS, "round 2")
    assert board.study.advertised_keys(1) == {a.address: (key("cipher round 1"), key("mask round 1"))}
    assert board.study.advertised_keys(2) == {a.address: (key("cipher round 2"), key("mask round 2")),
                                              b.address: (key("cipher round 2"), key("mask round 2"))}
    assert data_of(board, 1, SHARES) == {a.address: b"step 1 round 1"}
    assert data_of(board, 1, REVEAL) == {a.address: b"step 2 round 1"}
    assert data_of(board, 2, SHARES) == {b.address: b"step 1 round 2"}
    assert data_of(board, 2, REVEAL) == {}
    assert board.study.secagg_posts(1, CKKS_SUM) == {a.address: digest("step 5 round 1")}
    assert board.study.secagg_posts(2, CKKS_KEYS) == {b.address: digest("step 4 round 2")}
    assert board.study.secagg_posts(2, CKKS_SUM) == {} and board.study.secagg_posts(1, CKKS_KEYS) == {}
    assert board.study.advertised_keys(3) == {} and data_of(board, 3, SHARES) == {}
    assert len(board.study.events("KeysAdvertised")) == 3 and len(board.study.events("SecAggData")) == 3
    assert len(board.study.events("SecAggPosted")) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_round_contracts_take_messages_in_every_phase_of_the_open_round(embedded, kind):
    """Keys and shares come before the updates, reveals and the decrypted CKKS sum after the
    commit phase closed: the open round takes them in AGGREGATING (committee) or SCORING and
    VOTING (consensus) too."""
    board = make_board(embedded, kind)
    run = Run(board.s, board.study, board.members)
    a, b = board.members[:2]
    assert board.study.phase() == Phase.COMMITTING
    advertise(board, a, 1)
    post(board, a, 1, SHARES)
    post(board, a, 1, CKKS_CONTEXT)
    run.commit_all()
    board.study.close_commits(a, 1)
    assert board.study.phase() == (Phase.AGGREGATING if kind == "committee" else Phase.SCORING)
    advertise(board, b, 1)
    post(board, a, 1, REVEAL)
    post(board, b, 1, SHARES)
    post(board, b, 1, CKKS_SUM)
    if kind == "consensus":
        for member in board.members:
            board.study.submit_scores(member, 1, [800_000] * len(board.members))
        board.study.close_scores(a, 1)
        assert board.study.phase() == Phase.VOTING
        post(board, b, 1, REVEAL)
        vote(run, a, 1)                                        # not yet final: still the open round
        post(board, board.members[2], 1, REVEAL)
        post(board, board.members[2], 1, CKKS_SUM)
    assert board.study.round_count() == 0
    assert set(board.study.advertised_keys(1)) == {a.address, b.address}
    assert set(data_of(board, 1, SHARES)) == {a.address, b.address}
    assert set(data_of(board, 1, REVEAL)) == \
        ({a.address} if kind == "committee" else {a.address, b.address, board.members[2].address})
    assert set(board.study.secagg_posts(1, CKKS_CONTEXT)) == {a.address}
    assert set(board.study.secagg_posts(1, CKKS_SUM)) == \
        ({b.address} if kind == "committee" else {b.address, board.members[2].address})


def test_any_institution_of_the_consortium_posts_on_the_ledger(embedded):
    """Loose: the study contract has no roster, where the round contracts refuse an institution
    that is not on theirs (REFUSED_SENDERS, "institution off the roster")."""
    board = make_board(embedded, "ledger", institutions=5, roster=4)
    newcomer = board.s.institutions[4]
    advertise(board, newcomer, 1)
    post(board, newcomer, 1, SHARES)
    post(board, newcomer, 1, CKKS_KEYS)
    assert set(board.study.advertised_keys(1)) == set(data_of(board, 1, SHARES)) == \
        set(board.study.secagg_posts(1, CKKS_KEYS)) == {newcomer.address}


def test_the_ledger_refuses_messages_before_the_study_starts(embedded):
    s = set_up_study(embedded, start=False)
    board = Board("ledger", s, s.ledger, list(s.institutions))
    member = s.institutions[0]
    transactions = embedded.stats.transactions
    for fn in FUNCTIONS:
        for sender, round in ((member, 1), (member, 0), (member, 2), (s.outsider, 1)):
            with refused(f"StudyLedger.{fn}", "study not started"):
                send(board, fn, sender, round)
    assert embedded.stats.transactions == transactions
    s.ledger.start_study(s.coordinator, digest("config"), digest("model 0"))
    advertise(board, member, 1)
    post(board, member, 1, SHARES)
    post(board, member, 1, CKKS_CONTEXT)
    assert set(s.ledger.advertised_keys(1)) == set(data_of(board, 1, SHARES)) == \
        set(s.ledger.secagg_posts(1, CKKS_CONTEXT)) == {member.address}


@pytest.mark.parametrize("kind", CONTRACTS)
def test_a_reinstated_member_posts_again(embedded, kind):
    board = make_board(embedded, kind, suspension_threshold=SUSPEND_AT_ONCE)
    victim = board.members[3]
    board.finish_round(rejected=[victim])
    assert board.study.suspended(victim.address)
    for fn in FUNCTIONS:
        with refused(f"{board.label}.{fn}", "member is suspended"):
            send(board, fn, victim, 2)
    board.study.reinstate(board.s.admin, victim.address)
    advertise(board, victim, 2)
    post(board, victim, 2, REVEAL)
    post(board, victim, 2, CKKS_SUM)
    assert set(board.study.advertised_keys(2)) == set(data_of(board, 2, REVEAL)) == \
        set(board.study.secagg_posts(2, CKKS_SUM)) == {victim.address}


def test_data_is_logged_whole_up_to_max_data(board):
    a, b, c = board.members[:3]
    full = sealed("full", MAX_DATA)
    logged = post_data(board, a, 1, SHARES, data=full)
    post_data(board, b, 1, REVEAL, data=b"\x00")                # one zero byte is data, not empty
    transactions, head = board.s.backend.stats.transactions, board.s.backend.block_number()
    with pytest.raises(ValueError, match=f"at most {MAX_DATA} bytes"):     # the wrapper sends no such call
        post_data(board, c, 1, SHARES, data=full + b"\x01")
    with pytest.raises(TransactionReverted, match=rf"^{re.escape(board.label)}\.post_secagg_data reverted: "):
        # sent anyway, past Bytes[MAX_DATA]: the contract decodes no such call
        board.s.backend.transact(c, board.study.contract.functions.post_secagg_data(1, SHARES, full + b"\x01"))
    assert board.s.backend.stats.transactions == transactions and board.s.backend.block_number() == head
    assert board.study.data_posts(1, SHARES) == [Posted(a.address, full, logged["blockNumber"])]
    assert data_of(board, 1, REVEAL) == {b.address: b"\x00"}
    assert len(board.study.events("SecAggData")) == 2


# --- refusals ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def refusing(request) -> Board:
    """A study of kind `request.param` over five institutions (the round contracts' roster: the
    first four); round 1 finalized, rejecting member 3's update, which suspends it; then member 2
    removed from the consortium; round 2 open. Refused messages leave it unchanged, so it is shared."""
    chain = EmbeddedChain.create(None)
    board = make_board(chain, request.param, institutions=5, roster=4, suspension_threshold=SUSPEND_AT_ONCE)
    board.finish_round(rejected=[board.members[3]])
    assert [board.study.suspended(m.address) for m in board.members] == [False, False, False, True]
    board.s.consortium.remove_member(board.s.admin, board.members[2].address)
    assert board.study.round_count() == 1
    yield board
    chain.close()


NOT_ON_ROSTER = {"ledger": "not an active institution", "rounds": "not on the study's roster"}
REFUSED_SENDERS = {   # case: (board -> (sender, round), reason, or by "ledger" / "rounds"); round 2 is open
    "outsider": (lambda b: (b.s.outsider, 2), NOT_ON_ROSTER),
    "coordinator": (lambda b: (b.s.coordinator, 2), NOT_ON_ROSTER),
    "institution off the roster": (lambda b: (b.s.institutions[4], 2), {"rounds": "not on the study's roster"}),
    "removed member": (lambda b: (b.members[2], 2), "not an active institution"),
    "suspended member": (lambda b: (b.members[3], 2), "member is suspended"),
    "finalized round": (lambda b: (b.members[0], 1), "not the open round"),
    "next round": (lambda b: (b.members[0], 3), "not the open round"),
    "far future round": (lambda b: (b.members[0], 2**256 - 1), "not the open round"),
    "round 0": (lambda b: (b.members[0], 0), "not the open round"),
    "outsider, wrong round": (lambda b: (b.s.outsider, 1), NOT_ON_ROSTER),
    "removed member, wrong round": (lambda b: (b.members[2], 3), "not an active institution"),
    "suspended member, wrong round": (lambda b: (b.members[3], 3), "member is suspended"),
}


def reason_for(kind: str, reason) -> str | None:
    """The reason `kind` gives; None where it accepts (the ledger has no roster)."""
    return reason if isinstance(reason, str) else reason.get("ledger" if kind == "ledger" else "rounds")


def cases(table: dict) -> list:
    return [pytest.param(kind, case, id=f"{kind}-{case}") for kind in CONTRACTS for case in table
            if reason_for(kind, table[case][-1]) is not None]


def assert_nothing_changed(board: Board, transactions: int, head: int) -> None:
    assert board.s.backend.stats.transactions == transactions and board.s.backend.block_number() == head
    assert board.study.events("KeysAdvertised") == [] and board.study.events("SecAggPosted") == []
    assert board.study.events("SecAggData") == []
    assert board.study.round_count() == 1


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("refusing, case", cases(REFUSED_SENDERS), indirect=["refusing"])
def test_refused_sender_or_round(refusing, case, fn):
    board = refusing
    make, reason = REFUSED_SENDERS[case]
    sender, round = make(board)
    transactions, head = board.s.backend.stats.transactions, board.s.backend.block_number()
    with refused(f"{board.label}.{fn}", reason_for(board.kind, reason)):
        send(board, fn, sender, round)
    assert_nothing_changed(board, transactions, head)


REFUSED_PAYLOADS = {   # case: (function, call(board, member 0), reason); the sender and the round are checked first
    "empty cipher key": ("advertise_keys", lambda b, m: advertise(b, m, 2, cipher=bytes(32)), "empty key"),
    "empty mask key": ("advertise_keys", lambda b, m: advertise(b, m, 2, mask=bytes(32)), "empty key"),
    "empty keys": ("advertise_keys", lambda b, m: advertise(b, m, 2, cipher=bytes(32), mask=bytes(32)), "empty key"),
    "data at step 0": ("post_secagg_data", lambda b, m: post_data(b, m, 2, 0), "step must be 1 or 2"),
    "data at a CKKS step": ("post_secagg_data", lambda b, m: post_data(b, m, 2, CKKS_CONTEXT), "step must be 1 or 2"),
    "data at the CKKS sum": ("post_secagg_data", lambda b, m: post_data(b, m, 2, CKKS_SUM), "step must be 1 or 2"),
    "data at step 6": ("post_secagg_data", lambda b, m: post_data(b, m, 2, 6), "step must be 1 or 2"),
    "data at step 255": ("post_secagg_data", lambda b, m: post_data(b, m, 2, 255), "step must be 1 or 2"),
    "empty shares": ("post_secagg_data", lambda b, m: post_data(b, m, 2, SHARES, data=b""), "empty data"),
    "empty reveal": ("post_secagg_data", lambda b, m: post_data(b, m, 2, REVEAL, data=b""), "empty data"),
    "bad step and empty data": ("post_secagg_data", lambda b, m: post_data(b, m, 2, 0, data=b""),
                                "step must be 1 or 2"),
    "digest at step 0": ("post_secagg", lambda b, m: post_digest(b, m, 2, 0), "step must be 3 to 5"),
    "digest of shares": ("post_secagg", lambda b, m: post_digest(b, m, 2, SHARES), "step must be 3 to 5"),
    "digest of a reveal": ("post_secagg", lambda b, m: post_digest(b, m, 2, REVEAL), "step must be 3 to 5"),
    "digest at step 6": ("post_secagg", lambda b, m: post_digest(b, m, 2, 6), "step must be 3 to 5"),
    "digest at step 255": ("post_secagg", lambda b, m: post_digest(b, m, 2, 255), "step must be 3 to 5"),
    "empty digest": ("post_secagg", lambda b, m: post_digest(b, m, 2, CKKS_CONTEXT, value=NO_DIGEST), "empty digest"),
    "empty sum digest": ("post_secagg", lambda b, m: post_digest(b, m, 2, CKKS_SUM, value=NO_DIGEST), "empty digest"),
    "bad step and empty digest": ("post_secagg", lambda b, m: post_digest(b, m, 2, SHARES, value=NO_DIGEST),
                                  "step must be 3 to 5"),
    "empty key, wrong round": ("advertise_keys", lambda b, m: advertise(b, m, 3, cipher=bytes(32)),
                               "not the open round"),
    "empty digest, finalized round": ("post_secagg", lambda b, m: post_digest(b, m, 1, value=NO_DIGEST),
                                      "not the open round"),
    "empty data, finalized round": ("post_secagg_data", lambda b, m: post_data(b, m, 1, data=b""),
                                    "not the open round"),
    "bad data step, next round": ("post_secagg_data", lambda b, m: post_data(b, m, 3, CKKS_SUM), "not the open round"),
    "empty key, outsider": ("advertise_keys", lambda b, m: advertise(b, b.s.outsider, 2, cipher=bytes(32)),
                            NOT_ON_ROSTER),
    "empty data, outsider": ("post_secagg_data", lambda b, m: post_data(b, b.s.outsider, 2, data=b""),
                             NOT_ON_ROSTER),
    "bad step, suspended member": ("post_secagg", lambda b, m: post_digest(b, b.members[3], 2, 6),
                                   "member is suspended"),
    "bad data step, suspended member": ("post_secagg_data", lambda b, m: post_data(b, b.members[3], 2, 6),
                                        "member is suspended"),
    "empty data, removed member": ("post_secagg_data", lambda b, m: post_data(b, b.members[2], 2, data=b""),
                                   "not an active institution"),
}


@pytest.mark.parametrize("refusing, case", cases(REFUSED_PAYLOADS), indirect=["refusing"])
def test_refused_payload(refusing, case):
    board = refusing
    fn, call, reason = REFUSED_PAYLOADS[case]
    transactions, head = board.s.backend.stats.transactions, board.s.backend.block_number()
    with refused(f"{board.label}.{fn}", reason_for(board.kind, reason)):
        call(board, board.members[0])
    assert_nothing_changed(board, transactions, head)


@pytest.mark.parametrize("refusing", ["ledger"], indirect=True)
def test_the_wrapper_refuses_malformed_input_before_sending(refusing):
    board, member = refusing, refusing.members[0]
    transactions = board.s.backend.stats.transactions
    with pytest.raises(ValueError, match="a digest must be 64 lowercase hex characters"):
        board.study.post_secagg(member, 2, CKKS_CONTEXT, "AB" * 32)
    for wrong in (key("x")[:31], key("x") + b"\x00", key("x").hex()):     # keys are 32 raw bytes
        with pytest.raises(MismatchedABI):
            board.study.advertise_keys(member, 2, wrong, key("y"))
    for wrong in ("step 1 shares", 1, None, bytearray(b"x"), bytes(MAX_DATA + 1)):   # data is bytes, bounded
        with pytest.raises(ValueError, match=f"at most {MAX_DATA} bytes"):
            board.study.post_secagg_data(member, 2, SHARES, wrong)
    assert board.s.backend.stats.transactions == transactions


# --- gas -------------------------------------------------------------------------------------


def test_gas_per_message(embedded, capsys):
    """A round of HOLDERS: a member's sealed shares (HOLDERS x SEALED_SHARE bytes) and its
    reveal (HOLDERS x REVEALED_SHARE bytes) logged as they are, a CKKS digest."""
    gas: dict[str, dict[str, int]] = {}
    for kind in CONTRACTS:
        board = make_board(embedded, kind)
        a, b = board.members[:2]
        gas[board.label] = {
            "advertise_keys": advertise(board, a, 1)["gasUsed"],
            "post_secagg_data (shares)": post_data(board, a, 1, SHARES,
                                                   data=sealed("shares", HOLDERS * SEALED_SHARE))["gasUsed"],
            "post_secagg_data (reveal)": post_data(board, b, 1, REVEAL,
                                                   data=sealed("reveal", HOLDERS * REVEALED_SHARE))["gasUsed"],
            "post_secagg (CKKS digest)": post_digest(board, a, 1, CKKS_CONTEXT)["gasUsed"]}
    with capsys.disabled():
        print("\nsecure-aggregation gas per message")
        for contract, table in gas.items():
            for name, used in table.items():
                print(f"  {contract:15} {name:26} {used:>7,}")
    for contract, table in gas.items():
        assert set(table) == set(GAS_BOUND)
        for name, used in table.items():
            assert 21_000 < used < GAS_BOUND[name], (contract, name, used)
        # the data is logged whole: it costs by its size, where a digest does not
        assert table["post_secagg_data (shares)"] > table["post_secagg_data (reveal)"] > \
            table["post_secagg (CKKS digest)"], (contract, table)
