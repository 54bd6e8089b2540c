"""The update schemes by name: which one a config asks for, which one a manifest's record names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedledger.protocol.homomorphic import Homomorphic, HomomorphicRecord
from fedledger.protocol.masking import Masking, MaskingRecord
from fedledger.protocol.plain import PlainUpdates
from fedledger.protocol.sampling import ClientDraw
from fedledger.protocol.scheme import AggregationRecord, UpdateScheme

SCHEMES: dict[str, type[UpdateScheme]] = {"none": PlainUpdates, "secagg": Masking, "ckks": Homomorphic}
RECORDS: dict[str, type[AggregationRecord]] = {MaskingRecord.scheme: MaskingRecord,
                                               HomomorphicRecord.scheme: HomomorphicRecord}


def record_from_manifest(doc: Any) -> AggregationRecord | None:
    """The record a manifest names ("secure_aggregation"), by its scheme; None for a round
    without one; ValueError if it is malformed."""
    if doc is None:
        return None
    scheme = doc.get("scheme") if isinstance(doc, Mapping) else None
    if scheme not in RECORDS:
        raise ValueError(f"unknown secure-aggregation scheme {scheme!r}")
    return RECORDS[scheme].from_manifest(doc)


def make_scheme(kind: str, board: Any, window: int, draw: ClientDraw = ClientDraw()) -> UpdateScheme:
    """The scheme [privacy] secure_aggregation names, its messages on `board`, its rounds'
    members drawn by `draw`."""
    return SCHEMES[kind](board, window, draw)
