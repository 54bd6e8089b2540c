# pragma version 0.4.3
"""
@title Secure-aggregation messages of a round, shared by every FedLedger study contract
@notice Pairwise masking (fedledger.privacy.secagg) needs three messages from each member in a
        round: its X25519 public keys, its sealed secret shares and, once the round's updates
        are in, the shares it reveals for unmasking. CKKS aggregation (fedledger.privacy.ckks)
        needs the public context and the sealed secret contexts from the member that made the
        keys, and each round's decrypted sum from a key holder. The keys are logged here as they
        are; everything else travels through the artifact store and only its digest is logged. Logging them
        from the member's own account authenticates them, so an aggregator cannot substitute
        keys (the attack on pairwise masking), and gives the audit everything the unmasking used.
        The contract stores nothing: the study contracts check who may post, this module logs.
"""

SHARES: constant(uint8) = 1  # the member's sealed shares of its secrets, one per holder
REVEAL: constant(uint8) = 2  # the shares it reveals to unmask the round's sum
CKKS_CONTEXT: constant(uint8) = 3  # the CKKS public context (its digest identifies the key set)
CKKS_KEYS: constant(uint8) = 4  # the CKKS secret context, sealed for each key holder
CKKS_SUM: constant(uint8) = 5  # a key holder's decryption of the round's encrypted sum


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
    assert step >= SHARES and step <= CKKS_SUM, "step must be 1 to 5"
    assert digest != empty(bytes32), "empty digest"
    log SecAggPosted(round_number=round_number, member=member, step=step, digest=digest)
