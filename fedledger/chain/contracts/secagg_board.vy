# pragma version 0.4.3
"""
@title Secure-aggregation messages of a round, shared by every FedLedger study contract
@notice Pairwise masking (fedledger.privacy.secagg) needs three messages from each member in a
        round: its X25519 public keys, its sealed secret shares and, once the round's updates
        are in, the shares it reveals for unmasking. CKKS aggregation (fedledger.privacy.ckks)
        needs the public context and the sealed secret contexts from the member that made the
        keys, and each round's decrypted sum from a key holder. The keys, the sealed shares and
        the revealed shares are logged here as they are (a few hundred bytes a member): a member
        that dies right after sharing has still delivered its shares, as a relaying server would
        have. The CKKS material is large and travels through the artifact store; only its digest
        is logged. Logging them from the member's own account authenticates them, so an
        aggregator cannot substitute keys (the attack on pairwise masking), and gives the audit
        everything the unmasking used. The contract stores nothing: the study contracts check who
        may post, this module logs.
"""

SHARES: constant(uint8) = 1  # the member's sealed shares of its secrets, one per holder (data)
REVEAL: constant(uint8) = 2  # the shares it reveals to unmask the round's sum (data)
CKKS_CONTEXT: constant(uint8) = 3  # the CKKS public context (its digest identifies the key set)
CKKS_KEYS: constant(uint8) = 4  # the CKKS secret context, sealed for each key holder
CKKS_SUM: constant(uint8) = 5  # a key holder's decryption of the round's encrypted sum
MAX_DATA: constant(uint256) = 32768  # a packed message: room for 128 holders' sealed shares


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

event SecAggData:
    round_number: indexed(uint256)
    member: indexed(address)
    step: uint8
    data: Bytes[MAX_DATA]


@internal
def _advertise(member: address, round_number: uint256, cipher_key: bytes32, mask_key: bytes32):
    assert cipher_key != empty(bytes32) and mask_key != empty(bytes32), "empty key"
    log KeysAdvertised(round_number=round_number, member=member, cipher_key=cipher_key, mask_key=mask_key)


@internal
def _post(member: address, round_number: uint256, step: uint8, digest: bytes32):
    assert step >= CKKS_CONTEXT and step <= CKKS_SUM, "step must be 3 to 5"
    assert digest != empty(bytes32), "empty digest"
    log SecAggPosted(round_number=round_number, member=member, step=step, digest=digest)


@internal
def _post_data(member: address, round_number: uint256, step: uint8, data: Bytes[MAX_DATA]):
    assert step == SHARES or step == REVEAL, "step must be 1 or 2"
    assert len(data) > 0, "empty data"
    log SecAggData(round_number=round_number, member=member, step=step, data=data)
