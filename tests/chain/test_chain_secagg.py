"""secagg_board.vy in every study contract: LooseStudy (any active institution of the
consortium) and SemiStudy / FullStudy (an active roster member, through rounds.vy).
A poster advertises its X25519 keys (KeysAdvertised) and logs the digests of its shares and of
its revealed shares (SecAggPosted) for the open round, in any of its phases; the SecAggBoard
wrapper reads them back, the first message per member counting. Everything else is refused
with its reason, storing and logging nothing.

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
from fedledger.chain.secagg import CKKS_CONTEXT, CKKS_KEYS, CKKS_SUM, REVEAL, SHARES

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
SUSPEND_AT_ONCE = 100      # suspension threshold = the initial reputation: one rejection suspends
GAS_BOUND = 60_000


def key(tag: str) -> bytes:
    """A 32-byte stand-in for an X25519 public key."""
    return hashlib.sha256(f"key {tag}".encode()).digest()


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


def post(board: Board, member, round: int, step: int = SHARES, tag: str | None = None, *, value=None):
    tag = member.address if tag is None else tag
    return board.study.post_secagg(member, round, step, digest(f"step {step} {tag}") if value is None else value)


def send(board: Board, fn: str, member, round: int):
    """`member` calls `fn` (advertise_keys or post_secagg) for `round` with a valid payload."""
    return advertise(board, member, round) if fn == "advertise_keys" else post(board, member, round)


@pytest.fixture(params=CONTRACTS)
def board(request, embedded) -> Board:
    return make_board(embedded, request.param)


def test_steps_match_the_contract():
    source = (CONTRACTS_DIR / "secagg_board.vy").read_text()
    steps = dict(re.findall(r"^(\w+): constant\(uint8\) = (\d+)", source, re.MULTILINE))
    assert steps == {"SHARES": str(SHARES), "REVEAL": str(REVEAL), "CKKS_CONTEXT": str(CKKS_CONTEXT),
                     "CKKS_KEYS": str(CKKS_KEYS), "CKKS_SUM": str(CKKS_SUM)}
    assert (SHARES, REVEAL, CKKS_CONTEXT, CKKS_KEYS, CKKS_SUM) == (1, 2, 3, 4, 5)


# --- accepted messages ---------------------------------------------------------------------------


def test_keys_and_digests_are_logged_as_posted(board):
    a, b = board.members[:2]
    keys = advertise(board, a, 1)
    shares = post(board, a, 1, SHARES)
    reveal = post(board, b, 1, REVEAL)

    assert board.study.events("KeysAdvertised") == [
        {"round_number": 1, "member": a.address, "cipher_key": key(f"cipher {a.address}"),
         "mask_key": key(f"mask {a.address}"), "block": keys["blockNumber"]}]
    assert board.study.events("SecAggPosted") == [
        {"round_number": 1, "member": a.address, "step": SHARES, "digest": bytes.fromhex(digest(f"step 1 {a.address}")),
         "block": shares["blockNumber"]},
        {"round_number": 1, "member": b.address, "step": REVEAL, "digest": bytes.fromhex(digest(f"step 2 {b.address}")),
         "block": reveal["blockNumber"]}]
    for receipt, name in ((keys, "KeysAdvertised"), (shares, "SecAggPosted"), (reveal, "SecAggPosted")):
        assert receipt["status"] == 1
        assert [e["event"] for e in board.study.all_events() if e["block"] == receipt["blockNumber"]] == [name]

    assert board.study.advertised_keys(1) == {a.address: (key(f"cipher {a.address}"), key(f"mask {a.address}"))}
    assert board.study.secagg_posts(1, SHARES) == {a.address: digest(f"step 1 {a.address}")}
    assert board.study.secagg_posts(1, REVEAL) == {b.address: digest(f"step 2 {b.address}")}
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

    post(board, c, 1, REVEAL, "early")                        # a reveal before any shares: logged as it is
    post(board, b, 1, SHARES, "first")
    post(board, a, 1, SHARES, "first")
    post(board, b, 1, SHARES, "second")
    post(board, b, 1, REVEAL, "first")
    post(board, b, 1, REVEAL, "second")
    assert len(board.study.events("SecAggPosted", 1)) == 6
    assert list(board.study.secagg_posts(1, SHARES).items()) == [
        (b.address, digest("step 1 first")), (a.address, digest("step 1 first"))]
    assert list(board.study.secagg_posts(1, REVEAL).items()) == [
        (c.address, digest("step 2 early")), (b.address, digest("step 2 first"))]


def test_messages_are_read_per_round(board):
    a, b = board.members[:2]
    advertise(board, a, 1, "round 1")
    post(board, a, 1, SHARES, "round 1")
    post(board, a, 1, REVEAL, "round 1")
    board.finish_round()
    for fn in ("advertise_keys", "post_secagg"):                # the finalized round is closed to the board
        with refused(f"{board.label}.{fn}", "not the open round"):
            send(board, fn, a, 1)

    advertise(board, a, 2, "round 2")
    advertise(board, b, 2, "round 2")
    post(board, b, 2, SHARES, "round 2")
    assert board.study.advertised_keys(1) == {a.address: (key("cipher round 1"), key("mask round 1"))}
    assert board.study.advertised_keys(2) == {a.address: (key("cipher round 2"), key("mask round 2")),
                                              b.address: (key("cipher round 2"), key("mask round 2"))}
    assert board.study.secagg_posts(1, SHARES) == {a.address: digest("step 1 round 1")}
    assert board.study.secagg_posts(1, REVEAL) == {a.address: digest("step 2 round 1")}
    assert board.study.secagg_posts(2, SHARES) == {b.address: digest("step 1 round 2")}
    assert board.study.secagg_posts(2, REVEAL) == {}
    assert board.study.advertised_keys(3) == {} and board.study.secagg_posts(3, SHARES) == {}
    assert len(board.study.events("KeysAdvertised")) == 3 and len(board.study.events("SecAggPosted")) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_round_contracts_take_messages_in_every_phase_of_the_open_round(embedded, kind):
    """Keys and shares come before the updates, reveals after the commit phase closed: the open
    round takes them in AGGREGATING (committee) or SCORING and VOTING (consensus) too."""
    board = make_board(embedded, kind)
    run = Run(board.s, board.study, board.members)
    a, b = board.members[:2]
    assert board.study.phase() == Phase.COMMITTING
    advertise(board, a, 1)
    post(board, a, 1, SHARES)
    run.commit_all()
    board.study.close_commits(a, 1)
    assert board.study.phase() == (Phase.AGGREGATING if kind == "committee" else Phase.SCORING)
    advertise(board, b, 1)
    post(board, a, 1, REVEAL)
    post(board, b, 1, SHARES)
    if kind == "consensus":
        for member in board.members:
            board.study.submit_scores(member, 1, [800_000] * len(board.members))
        board.study.close_scores(a, 1)
        assert board.study.phase() == Phase.VOTING
        post(board, b, 1, REVEAL)
        vote(run, a, 1)                                        # not yet final: still the open round
        post(board, board.members[2], 1, REVEAL)
    assert board.study.round_count() == 0
    assert set(board.study.advertised_keys(1)) == {a.address, b.address}
    assert set(board.study.secagg_posts(1, SHARES)) == {a.address, b.address}
    assert set(board.study.secagg_posts(1, REVEAL)) == \
        ({a.address} if kind == "committee" else {a.address, b.address, board.members[2].address})


def test_any_institution_of_the_consortium_posts_on_the_ledger(embedded):
    """Loose: the study contract has no roster, where the round contracts refuse an institution
    that is not on theirs (REFUSED_SENDERS, "institution off the roster")."""
    board = make_board(embedded, "ledger", institutions=5, roster=4)
    newcomer = board.s.institutions[4]
    advertise(board, newcomer, 1)
    post(board, newcomer, 1, SHARES)
    assert set(board.study.advertised_keys(1)) == set(board.study.secagg_posts(1, SHARES)) == {newcomer.address}


def test_the_ledger_refuses_messages_before_the_study_starts(embedded):
    s = set_up_study(embedded, start=False)
    board = Board("ledger", s, s.ledger, list(s.institutions))
    member = s.institutions[0]
    transactions = embedded.stats.transactions
    for fn in ("advertise_keys", "post_secagg"):
        for sender, round in ((member, 1), (member, 0), (member, 2), (s.outsider, 1)):
            with refused(f"StudyLedger.{fn}", "study not started"):
                send(board, fn, sender, round)
    assert embedded.stats.transactions == transactions
    s.ledger.start_study(s.coordinator, digest("config"), digest("model 0"))
    advertise(board, member, 1)
    post(board, member, 1)
    assert set(s.ledger.advertised_keys(1)) == set(s.ledger.secagg_posts(1, SHARES)) == {member.address}


@pytest.mark.parametrize("kind", CONTRACTS)
def test_a_reinstated_member_posts_again(embedded, kind):
    board = make_board(embedded, kind, suspension_threshold=SUSPEND_AT_ONCE)
    victim = board.members[3]
    board.finish_round(rejected=[victim])
    assert board.study.suspended(victim.address)
    with refused(f"{board.label}.advertise_keys", "member is suspended"):
        advertise(board, victim, 2)
    board.study.reinstate(board.s.admin, victim.address)
    advertise(board, victim, 2)
    post(board, victim, 2, REVEAL)
    assert set(board.study.advertised_keys(2)) == set(board.study.secagg_posts(2, REVEAL)) == {victim.address}


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
    assert board.study.round_count() == 1


@pytest.mark.parametrize("fn", ["advertise_keys", "post_secagg"])
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
    "step 0": ("post_secagg", lambda b, m: post(b, m, 2, 0), "step must be 1 to 5"),
    "step 6": ("post_secagg", lambda b, m: post(b, m, 2, 6), "step must be 1 to 5"),
    "step 255": ("post_secagg", lambda b, m: post(b, m, 2, 255), "step must be 1 to 5"),
    "empty digest": ("post_secagg", lambda b, m: post(b, m, 2, SHARES, value=NO_DIGEST), "empty digest"),
    "empty reveal digest": ("post_secagg", lambda b, m: post(b, m, 2, REVEAL, value=NO_DIGEST), "empty digest"),
    "bad step and empty digest": ("post_secagg", lambda b, m: post(b, m, 2, 0, value=NO_DIGEST),
                                  "step must be 1 to 5"),
    "empty key, wrong round": ("advertise_keys", lambda b, m: advertise(b, m, 3, cipher=bytes(32)),
                               "not the open round"),
    "empty digest, finalized round": ("post_secagg", lambda b, m: post(b, m, 1, SHARES, value=NO_DIGEST),
                                      "not the open round"),
    "empty key, outsider": ("advertise_keys", lambda b, m: advertise(b, b.s.outsider, 2, cipher=bytes(32)),
                            NOT_ON_ROSTER),
    "bad step, suspended member": ("post_secagg", lambda b, m: post(b, b.members[3], 2, 6), "member is suspended"),
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
        board.study.post_secagg(member, 2, SHARES, "AB" * 32)
    for wrong in (key("x")[:31], key("x") + b"\x00", key("x").hex()):     # keys are 32 raw bytes
        with pytest.raises(MismatchedABI):
            board.study.advertise_keys(member, 2, wrong, key("y"))
    assert board.s.backend.stats.transactions == transactions


# --- gas -------------------------------------------------------------------------------------


def test_gas_per_message(embedded, capsys):
    gas: dict[str, dict[str, int]] = {}
    for kind in CONTRACTS:
        board = make_board(embedded, kind)
        a, b = board.members[:2]
        gas[board.label] = {"advertise_keys": advertise(board, a, 1)["gasUsed"],
                            "post_secagg (shares)": post(board, a, 1, SHARES)["gasUsed"],
                            "post_secagg (reveal)": post(board, b, 1, REVEAL)["gasUsed"]}
    with capsys.disabled():
        print("\nsecure-aggregation gas per message")
        for contract, table in gas.items():
            for name, used in table.items():
                print(f"  {contract:15} {name:21} {used:>7,}")
    for contract, table in gas.items():
        for name, used in table.items():
            assert 21_000 < used < GAS_BOUND, (contract, name, used)
