"""Fixtures for the chain tests: real contracts on a real (embedded) EVM, no mocks."""

import hashlib
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from fedledger.chain import (
    ChainBackend,
    Consortium,
    EmbeddedChain,
    Role,
    RoundRecord,
    LooseStudy,
)

from fedledger.crypto import UpdateCommitment, sign_commitment

FUNDS = 10 * 10**18


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Study:
    backend: ChainBackend
    admin: LocalAccount
    coordinator: LocalAccount
    institutions: list[LocalAccount]
    outsider: LocalAccount
    consortium: Consortium
    ledger: LooseStudy

    def record(self, round: int, parent: str, participants=None, rejected=()) -> RoundRecord:
        """A well-formed record for `round` whose model digest is derived from the round number;
        `rejected`: (member, update digest or None, reason code) each, with the evidence an honest
        coordinator holds: the member's signature over a named update (10 samples), where the
        member is one of the study's institutions."""
        people = [i.address for i in self.institutions] if participants is None else participants
        accounts = {a.address: a for a in self.institutions}
        evidence = tuple(
            (10, sign_commitment(accounts[member], UpdateCommitment(
                self.backend.chain_id, self.ledger.address, round, parent, update, 10)))
            if member in accounts and update is not None else (0, "") for member, update, _ in rejected)
        return RoundRecord(round=round, parent_model=parent, model=digest(f"model {round}"),
                           updates_root=digest(f"root {round}"), participants=tuple(people),
                           metrics_digest=digest(f"metrics {round}"), manifest_digest=digest(f"manifest {round}"),
                           rejected=tuple(rejected), evidence=evidence)


def set_up_study(backend: ChainBackend, *, start: bool = True, institutions: int = 4, ledger: bool = True,
                 suspension_threshold: int = 0) -> Study:
    """Fund fresh accounts, deploy a consortium (1 coordinator, N institutions) and, unless
    `ledger` is false, a study ledger (suspending below `suspension_threshold`, if not 0)."""
    admin, coordinator, outsider = Account.create(), Account.create(), Account.create()
    members = [Account.create() for _ in range(institutions)]
    backend.fund([a.address for a in (admin, coordinator, outsider, *members)], FUNDS)
    consortium = Consortium.deploy(backend, admin)
    consortium.add_member(admin, coordinator.address, "coordinator", Role.COORDINATOR)
    for index, member in enumerate(members):
        consortium.add_member(admin, member.address, f"hospital {index}", Role.INSTITUTION)
    if not ledger:
        return Study(backend, admin, coordinator, members, outsider, consortium, None)
    study_ledger = LooseStudy.deploy(backend, admin, consortium, suspension_threshold)
    if start:
        study_ledger.start_study(coordinator, digest("config"), digest("model 0"))
    return Study(backend, admin, coordinator, members, outsider, consortium, study_ledger)


@pytest.fixture
def embedded():
    chain = EmbeddedChain.create(None)
    yield chain
    chain.close()


@pytest.fixture
def study(embedded) -> Study:
    return set_up_study(embedded)
