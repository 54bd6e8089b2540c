"""Content-addressed artifact store: sha-256 digests, canonical safetensors and JSON encodings.

Digest format for the whole project: `sha256_hex`, 64 lowercase hex characters, no 0x.
"""

from fedledger.store.artifacts import ArtifactStore
from fedledger.store.codec import canonical_json, decode_arrays, decode_params, encode_arrays, encode_params
from fedledger.store.digest import check_digest, sha256_hex

__all__ = ["ArtifactStore", "canonical_json", "check_digest", "decode_arrays", "decode_params", "encode_arrays",
           "encode_params", "sha256_hex"]
