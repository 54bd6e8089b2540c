# pragma version 0.4.3
"""
@title Differential-privacy budget shared by every FedLedger study contract
@notice Each member's privacy spend, written once for StudyLedger (loosely coupled),
        CommitteeStudy (semi) and ConsensusStudy (full, both through rounds.vy).
        A study that uses differential privacy has a budget: the (epsilon, delta) each member
        may spend over the whole study. Every update such a member releases carries its
        PrivacySpend: the mechanism it ran (noise multiplier, sampling rate, steps) and its
        total epsilon after it, which the contract stores and logs (PrivacySpent). An update
        whose epsilon would pass the budget is refused. The contract cannot run the Rényi-DP
        accountant itself; `fedledger audit verify` recomputes every epsilon from the logged
        mechanisms and checks it against the logged one.
        The consortium's admin (governance) may change the budget; a study without differential
        privacy has budget 0 and takes no spends.
"""

interface Governance:
    def admin() -> address: view


struct PrivacySpend:
    noise_multiplier: uint256  # millionths
    sample_rate: uint256  # billionths (1e9: every record, as in client-level DP)
    steps: uint256
    epsilon: uint256  # millionths: the member's total over the study after this release


event PrivacySpent:
    round_number: indexed(uint256)
    member: indexed(address)
    noise_multiplier: uint256
    sample_rate: uint256
    steps: uint256
    epsilon: uint256

event PrivacyBudgetChanged:
    before: uint256
    after: uint256
    admin: address


RATE_SCALE: constant(uint256) = 10**9
DELTA_SCALE: constant(uint256) = 10**18

epsilon_budget: public(uint256)  # millionths, per member over the study; 0: no differential privacy
delta: public(uint256)  # 1e-18 units
epsilon_spent: public(HashMap[address, uint256])  # millionths


@internal
def _init(epsilon_budget: uint256, delta: uint256):
    assert (epsilon_budget == 0 and delta == 0) or (epsilon_budget != 0 and delta != 0), \
        "a privacy budget needs both epsilon and delta"
    assert delta < DELTA_SCALE, "delta must be below 1"
    self.epsilon_budget = epsilon_budget
    self.delta = delta


@internal
@pure
def _is_empty(spend: PrivacySpend) -> bool:
    return spend.noise_multiplier == 0 and spend.sample_rate == 0 and spend.steps == 0 and spend.epsilon == 0


@internal
@view
def _valid(member: address, spend: PrivacySpend) -> bool:
    """
    @notice Whether `spend` is a well-formed release for `member`: none in a study without a
            budget; otherwise a real mechanism whose total does not go down.
    """
    if self.epsilon_budget == 0:
        return self._is_empty(spend)
    return (spend.noise_multiplier > 0 and spend.sample_rate > 0 and spend.sample_rate <= RATE_SCALE
            and spend.steps > 0 and spend.epsilon > self.epsilon_spent[member])


@internal
@view
def _within_budget(spend: PrivacySpend) -> bool:
    return spend.epsilon <= self.epsilon_budget


@internal
def _spend(member: address, round_number: uint256, spend: PrivacySpend):
    """
    @notice Record a release `_valid` and `_within_budget` accepted (nothing in a study without a budget).
    """
    if self.epsilon_budget == 0:
        return
    self.epsilon_spent[member] = spend.epsilon
    log PrivacySpent(round_number=round_number, member=member, noise_multiplier=spend.noise_multiplier,
                     sample_rate=spend.sample_rate, steps=spend.steps, epsilon=spend.epsilon)


@internal
def _set_budget(epsilon_budget: uint256, governance: address):
    """
    @notice Change the per-member budget; only the admin of `governance` (the consortium), and
            only in a study that has one (turning privacy on or off mid-study would break its
            accounting).
    """
    assert msg.sender == staticcall Governance(governance).admin(), "only the consortium admin"
    assert self.epsilon_budget != 0, "the study has no privacy budget"
    assert epsilon_budget != 0, "a privacy budget cannot be switched off"
    log PrivacyBudgetChanged(before=self.epsilon_budget, after=epsilon_budget, admin=msg.sender)
    self.epsilon_budget = epsilon_budget
