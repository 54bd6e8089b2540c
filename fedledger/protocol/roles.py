"""Which roles a member plays, by architecture: the one place both runtimes get them from."""

from __future__ import annotations

from typing import Protocol

from fedledger.config import Config
from fedledger.protocol.committing import CommittingInstitution
from fedledger.protocol.context import MemberContext, Step
from fedledger.protocol.full import Validator
from fedledger.protocol.loose import Coordinator, LooseInstitution
from fedledger.protocol.node import InstitutionNode
from fedledger.protocol.scheme import UpdateScheme
from fedledger.protocol.semi import CommitteeMember
from fedledger.protocol.standardization import Standardization


class Role(Protocol):
    def step(self) -> Step:
        """Do what this member owes now (see fedledger.protocol.context)."""


class Standardized:
    """A role that acts only once its institution's rows are standardized with the consortium's
    statistics (fedledger.protocol.standardization)."""

    def __init__(self, role: Role, standardization: Standardization) -> None:
        self.role, self.standardization = role, standardization

    def step(self) -> Step:
        pending = self.standardization.step()
        return self.role.step() if pending is None else pending


def institution_roles(ctx: MemberContext, node: InstitutionNode, scheme: UpdateScheme) -> list[Role]:
    """An institution's roles: in a loose study it trains and hands its updates to the
    coordinator; in a semi study it also aggregates when drawn; in a full one it validates.
    Under [data] standardize = "consortium" each waits for the consortium's standardization."""
    architecture = ctx.cfg.study.architecture
    roles: list[Role]
    if architecture == "loose":
        roles = [LooseInstitution(ctx, node, scheme)]
    else:
        aggregator: Role = CommitteeMember(ctx, scheme) if architecture == "semi" else Validator(ctx, node, scheme)
        roles = [CommittingInstitution(ctx, node, scheme), aggregator]
    if not consortium_standardization(ctx.cfg):
        return roles
    node.await_standardization()
    standardization = Standardization(ctx, node)
    return [Standardized(role, standardization) for role in roles]


def consortium_standardization(cfg: Config) -> bool:
    """Whether the study's institutions standardize with the consortium's statistics, computed
    in the study ([data] standardize = "consortium"; the vendored datasets come standardized)."""
    return cfg.data.dataset == "csv" and cfg.data.standardize == "consortium"


def coordinator_roles(ctx: MemberContext, scheme: UpdateScheme, config_digest: str, initial_model: str) -> list[Role]:
    """The loose study's coordinator (the other architectures have none)."""
    return [Coordinator(ctx, scheme, config_digest, initial_model)]
