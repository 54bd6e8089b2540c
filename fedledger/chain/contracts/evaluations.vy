# pragma version 0.4.3
"""
@title Institutions' evaluations of finalized models, shared by every FedLedger study contract
@notice An institution evaluates a finalized round's model on its own test set and logs here,
        from its own account, the digest of its signed evaluation document (fedledger/protocol/
        evaluation.py). Every model but the last is evaluated in the next round's commitments
        or anchored metrics; this is how the final model's figures get on chain too. The study
        contracts check who may submit and for which rounds; this module keeps one per member
        and round.
"""

event EvaluationSubmitted:
    round_number: indexed(uint256)
    member: indexed(address)
    model: bytes32
    evaluation: bytes32


evaluation_of: public(HashMap[uint256, HashMap[address, bytes32]])


@internal
def _submit(member: address, round_number: uint256, model: bytes32, evaluation: bytes32):
    assert evaluation != empty(bytes32), "empty digest"
    assert self.evaluation_of[round_number][member] == empty(bytes32), "already evaluated this round"
    self.evaluation_of[round_number][member] = evaluation
    log EvaluationSubmitted(round_number=round_number, member=member, model=model, evaluation=evaluation)
