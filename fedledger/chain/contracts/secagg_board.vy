# pragma version 0.4.3
"""
@title Secure-aggregation messages of a round, shared by every FedLedger study contract
@notice Secure aggregation (fedledger.privacy.secagg) needs three messages from each member in a
        round: its X25519 public keys, its sealed secret shares and, once the round's updates
        are in, the shares it reveals for unmasking. The keys are logged here as they are; the
        shares travel through the artifact store and only their digests are logged. Logging them
        from the member's own account authenticates them, so an aggregator cannot substitute
        keys (the attack on pairwise masking), and gives the audit everything the unmasking used.
        The contract stores nothing: the study contracts check who may post, this module logs.
"""

SHARES: constant(uint8) = 1  # the member's sealed shares of its secrets, one per holder
REVEAL: constant(uint8) = 2  # the shares it reveals to unmask the round's sum


event KeysAdvertised:
    round_number: indexed(uint256)
    member: indexed(address)
    cipher_key: bytes32
    mask_key: bytes32

event SecAggPosted:
    round_number: indexed(uint256)
    member: indexed(address)
    step: uint8
    digest: bytes32


@internal
def _advertise(member: address, round_number: uint256, cipher_key: bytes32, mask_key: bytes32):
    assert cipher_key != empty(bytes32) and mask_key != empty(bytes32), "empty key"
    log KeysAdvertised(round_number=round_number, member=member, cipher_key=cipher_key, mask_key=mask_key)


@internal
def _post(member: address, round_number: uint256, step: uint8, digest: bytes32):
    assert step == SHARES or step == REVEAL, "step must be 1 (shares) or 2 (reveal)"
    assert digest != empty(bytes32), "empty digest"
    log SecAggPosted(round_number=round_number, member=member, step=step, digest=digest)
