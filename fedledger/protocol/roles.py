"""Which roles a member plays, by architecture: the one place both runtimes get them from."""

from __future__ import annotations

from typing import Protocol

from fedledger.protocol.committing import CommittingInstitution
from fedledger.protocol.context import MemberContext, Step
from fedledger.protocol.full import Validator
from fedledger.protocol.loose import Coordinator, LooseInstitution
from fedledger.protocol.node import InstitutionNode
from fedledger.protocol.scheme import UpdateScheme
from fedledger.protocol.semi import CommitteeMember


class Role(Protocol):
    def step(self) -> Step:
        """Do what this member owes now (see fedledger.protocol.context)."""


def institution_roles(ctx: MemberContext, node: InstitutionNode, scheme: UpdateScheme) -> list[Role]:
    """An institution's roles: in a loose study it trains and hands its updates to the
    coordinator; in a semi study it also aggregates when drawn; in a full one it validates."""
    architecture = ctx.cfg.study.architecture
    if architecture == "loose":
        return [LooseInstitution(ctx, node, scheme)]
    aggregator: Role = CommitteeMember(ctx, scheme) if architecture == "semi" else Validator(ctx, node, scheme)
    return [CommittingInstitution(ctx, node, scheme), aggregator]


def coordinator_roles(ctx: MemberContext, scheme: UpdateScheme, config_digest: str, initial_model: str) -> list[Role]:
    """The loose study's coordinator (the other architectures have none)."""
    return [Coordinator(ctx, scheme, config_digest, initial_model)]
