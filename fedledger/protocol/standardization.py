"""The consortium's standardization ([data] standardize = "consortium"): before its first round,
every institution shares the count, sums and sums of squares of its training rows' features
(and, for regression, of its labels), signed; once it holds every institution's, it computes
the consortium's means and standard deviations and standardizes its own rows with them. Every
feature then means the same at every site, as if one data holder had standardized all rows, and
no row leaves its site.

The statistics travel as notices (round 0, kind "statistics"), as other documents members hand
each other do; each institution checks each one's signature and shape, and waits for every
institution on the roster (the result must be the same at every site, so none is left out).
What the notices cannot rule out: an institution could sign different statistics for different
peers, or untrue ones.

Under secure aggregation ([privacy] secure_aggregation) no institution's own sums are shown:
each posts a signed X25519 key ("statistics key"), then its statistics masked pairwise with
every other institution's key ("masked statistics", fedledger.privacy.masked_sums), and each
adds up everyone's masked vectors, in which the masks cancel: only the consortium's totals come
out. Without secure aggregation the statistics travel in the clear ("statistics"), and each
institution's feature means are seen by the other members.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from web3 import Web3

from fedledger.crypto import StatisticsStatement, recover_signer, sign_commitment
from fedledger.errors import DataError
from fedledger.learning.data import ClientData, raw_features
from fedledger.learning.tasks import MAX_RECORDS
from fedledger.privacy.masked_sums import MaskingError, masked, member_key, public_key_hex, unmasked_sum
from fedledger.protocol.context import ACTED, MemberContext, Step, waiting
from fedledger.protocol.node import InstitutionNode
from fedledger.store import canonical_json, sha256_hex

MAX_INSTITUTIONS = 4096             # the consortium contract's bound
ROUND, KIND = 0, "statistics"        # a notice before the first round
KEY_KIND, MASKED_KIND = "statistics key", "masked statistics"    # under secure aggregation
KEYS = {"institution", "chain_id", "ledger", "statistics", "signature"}
SIGNED = {"institution", "chain_id", "ledger", "signature"}      # and one field: the key or the masked vector


def site_statistics(data: ClientData, with_labels: bool) -> dict[str, Any]:
    """The count, sums and sums of squares of the institution's training rows (validation rows
    included: they are training rows held back), raw, in float64."""
    parts = [data.x_train] + ([data.x_val] if data.x_val is not None else [])
    raw = np.concatenate([raw_features(data, x) for x in parts])
    stats: dict[str, Any] = {"n": len(raw), "sum": raw.sum(axis=0).tolist(), "sum_sq": (raw ** 2).sum(axis=0).tolist()}
    if with_labels:
        y = np.concatenate([data.y_train] + ([data.y_val] if data.y_val is not None else [])).astype(np.float64)
        stats |= {"label_sum": float(y.sum()), "label_sum_sq": float((y ** 2).sum())}
    return stats


def statistics_problem(doc: Any, institution: str, chain_id: int, ledger: str, features: int,
                       with_labels: bool) -> str | None:
    """Why `doc` is not `institution`'s signed statistics for this study (None if it is)."""
    if not isinstance(doc, dict) or set(doc) != KEYS or not isinstance(doc["statistics"], dict):
        return f"not a signed statistics document (it needs exactly the keys {', '.join(sorted(KEYS))})"
    if not _for(doc, institution, chain_id, ledger):
        return "it is another institution's, or another study's"
    s = doc["statistics"]
    expected = {"n", "sum", "sum_sq"} | ({"label_sum", "label_sum_sq"} if with_labels else set())
    if set(s) != expected:
        return f"its statistics need exactly the keys {', '.join(sorted(expected))}"
    n = s["n"]
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_RECORDS:
        return f"n must be a whole number of rows from 2 to {MAX_RECORDS:,}"
    for key in ("sum", "sum_sq"):
        values = s[key]
        if not isinstance(values, list) or len(values) != features or not all(_finite(v) for v in values):
            return f"{key} must be {features} finite numbers"
    labels = [s[k] for k in ("label_sum", "label_sum_sq") if k in s]
    if not all(_finite(v) for v in labels):
        return "the label sums must be finite numbers"
    if _squares_fall_short(s, n, floor=-1e-9):
        return "a sum of squares is smaller than its sum allows"
    if not _signed_by(doc, s, institution, chain_id, ledger):
        return "the signature is not the institution's"
    return None


def _for(doc: Mapping[str, Any], institution: str, chain_id: int, ledger: str) -> bool:
    """Whether a notice names `institution` and this study (chain and ledger)."""
    return (str(doc["institution"]).lower(), doc["chain_id"], str(doc["ledger"]).lower()) == (
        institution.lower(), chain_id, ledger.lower())


def _signed_by(doc: Mapping[str, Any], signed: Any, institution: str, chain_id: int, ledger: str) -> bool:
    """Whether the notice's signature is `institution`'s over `signed` for this study."""
    statement = StatisticsStatement(chain_id, Web3.to_checksum_address(ledger), sha256_hex(canonical_json(signed)))
    return recover_signer(statement, str(doc["signature"])) == Web3.to_checksum_address(institution)


def _squares_fall_short(stats: Mapping[str, Any], n: int, floor: float) -> bool:
    """Whether a sum of squares is below `floor` or below the square of its sum over n, which
    Cauchy-Schwarz rules out (up to rounding)."""
    pairs = list(zip(stats["sum"], stats["sum_sq"]))
    if "label_sum" in stats:
        pairs.append((stats["label_sum"], stats["label_sum_sq"]))
    return any(q < floor or q - t * t / n < -1e-6 * max(1.0, q) for t, q in pairs)


def _finite(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)


def consortium_scaling(statistics: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means and sample standard deviations over every institution's rows together (a constant
    column keeps a scale of 1, as `standardize` does), and for regression the label's."""
    n = sum(s["n"] for s in statistics)

    def moments(total: np.ndarray, squares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = total / n
        var = np.maximum(squares - n * mean ** 2, 0.0) / (n - 1)
        std = np.sqrt(var)
        std[std <= 1e-12 * np.maximum(1.0, np.abs(mean))] = 1.0
        return mean, std

    mean, std = moments(np.sum([s["sum"] for s in statistics], axis=0), np.sum([s["sum_sq"] for s in statistics], axis=0))
    scaling: dict[str, Any] = {"n": n, "mean": mean, "std": std}
    if "label_sum" in statistics[0]:
        label_mean, label_std = moments(np.array([sum(s["label_sum"] for s in statistics)]),
                                        np.array([sum(s["label_sum_sq"] for s in statistics)]))
        scaling |= {"label_mean": float(label_mean[0]), "label_std": float(label_std[0])}
    return scaling


def _signed_doc(ctx: MemberContext, field: str, value: Any) -> dict[str, Any]:
    """A notice of this member's `field`, signed over {field: value} for this study."""
    study = ctx.study
    statement = StatisticsStatement(study.chain_id, study.address, sha256_hex(canonical_json({field: value})))
    return {"institution": ctx.address, "chain_id": study.chain_id, "ledger": study.address, field: value,
            "signature": sign_commitment(ctx.account, statement)}


def signed_doc_problem(doc: Any, field: str, institution: str, chain_id: int, ledger: str) -> str | None:
    """Why `doc` is not `institution`'s signed notice of `field` for this study (None if it is)."""
    if not isinstance(doc, dict) or set(doc) != SIGNED | {field}:
        return f"not a signed notice (it needs exactly the keys {', '.join(sorted(SIGNED | {field}))})"
    if not _for(doc, institution, chain_id, ledger):
        return "it is another institution's, or another study's"
    if not _signed_by(doc, {field: doc[field]}, institution, chain_id, ledger):
        return "the signature is not the institution's"
    return None


def _vector(stats: Mapping[str, Any]) -> list[float]:
    """The statistics as one vector: n, the sums, the sums of squares (then the label's two)."""
    return [stats["n"], *stats["sum"], *stats["sum_sq"], *[stats[k] for k in ("label_sum", "label_sum_sq") if k in stats]]


def _statistics(vector: Sequence[float], features: int, with_labels: bool) -> dict[str, Any]:
    d = features
    stats: dict[str, Any] = {"n": round(vector[0]), "sum": list(vector[1:1 + d]), "sum_sq": list(vector[1 + d:1 + 2 * d])}
    if with_labels:
        stats |= {"label_sum": vector[1 + 2 * d], "label_sum_sq": vector[2 + 2 * d]}
    return stats


class Standardization:
    """One institution's part (see the module docstring): `step()` is None once its node's rows
    are standardized with the consortium's statistics, else what it did or waits for."""

    def __init__(self, ctx: MemberContext, node: InstitutionNode) -> None:
        self.ctx, self.node = ctx, node
        self.with_labels = node.model_spec.task.kind == "regression"
        self.masked = ctx.cfg.privacy.secure_aggregation != "none"
        self.done = False
        self.refused: dict[str, str] = {}      # institution -> why its notice was refused (said once)

    def step(self) -> Step | None:
        if self.done:
            return None
        found = self._masked_totals() if self.masked else self._statistics()
        if isinstance(found, Step):
            return found
        scaling = consortium_scaling(found)
        self.node.standardize(scaling["mean"], scaling["std"], scaling.get("label_mean"), scaling.get("label_std"))
        self.done = True
        self.ctx.log.info("standardized my rows with the consortium's statistics (%d rows at %d institutions%s)",
                          scaling["n"], len(self.ctx.roster), ", summed under masks" if self.masked else "")
        return ACTED

    def _statistics(self) -> list[dict[str, Any]] | Step:
        """Every institution's statistics, in the clear; or what this member does or waits for first."""
        ctx, study = self.ctx, self.ctx.study
        if ctx.notices.mine(ROUND, KIND) is None:
            stats = site_statistics(self.node.data, self.with_labels)
            statement = StatisticsStatement(study.chain_id, study.address, sha256_hex(canonical_json(stats)))
            ctx.notices.post(ROUND, KIND, {"institution": ctx.address, "chain_id": study.chain_id,
                                           "ledger": study.address, "statistics": stats,
                                           "signature": sign_commitment(ctx.account, statement)})
            ctx.log.info("posted the statistics of my %d training rows for the consortium's standardization",
                         stats["n"])
            return ACTED
        docs = self._gather(KIND, lambda doc, member: statistics_problem(
            doc, member, study.chain_id, study.address, self.node.data.num_features, self.with_labels))
        return docs if isinstance(docs, Step) else [doc["statistics"] for doc in docs.values()]

    def _masked_totals(self) -> list[dict[str, Any]] | Step:
        """The consortium's totals, summed from every institution's masked statistics; or what
        this member does or waits for first."""
        ctx, study = self.ctx, self.ctx.study
        context = f"{study.chain_id}|{study.address.lower()}|standardization".encode()
        key = member_key(bytes(ctx.account.key), context)
        if ctx.notices.mine(ROUND, KEY_KIND) is None:
            ctx.notices.post(ROUND, KEY_KIND, _signed_doc(ctx, "key", public_key_hex(key)))
            ctx.log.info("posted my key for the consortium's masked statistics")
            return ACTED
        keys = self._gather(KEY_KIND, lambda doc, member: signed_doc_problem(doc, "key", member, study.chain_id,
                                                                          study.address) or _key_problem(doc["key"]))
        if isinstance(keys, Step):
            return keys
        size = 1 + 2 * self.node.data.num_features + (2 if self.with_labels else 0)     # as _vector lays it out
        if ctx.notices.mine(ROUND, MASKED_KIND) is None:
            stats = site_statistics(self.node.data, self.with_labels)
            try:
                vector = masked(_vector(stats), ctx.address, key, {m: doc["key"] for m, doc in keys.items()}, context)
            except MaskingError as exc:
                raise DataError(f"{ctx.name(ctx.address)}'s statistics cannot be masked: {exc}") from None
            ctx.notices.post(ROUND, MASKED_KIND, _signed_doc(ctx, "masked", [format(x, "x") for x in vector]))
            ctx.log.info("posted the masked statistics of my %d training rows", stats["n"])
            return ACTED
        docs = self._gather(MASKED_KIND, lambda doc, member: signed_doc_problem(
            doc, "masked", member, study.chain_id, study.address) or _masked_problem(doc["masked"], size))
        if isinstance(docs, Step):
            return docs
        totals = _statistics(unmasked_sum([[int(x, 16) for x in doc["masked"]] for doc in docs.values()]),
                             self.node.data.num_features, self.with_labels)
        problem = _totals_problem(totals)
        if problem:
            return waiting(f"the consortium's standardization: the masked statistics do not add up ({problem}): "
                           "an institution posted a false vector")
        return [totals]

    def _gather(self, kind: str, problem_of: Callable[[Any, str], str | None]) -> dict[str, Any] | Step:
        """Every roster institution's `kind` notice that passes `problem_of`, by address; or what
        this member waits for (the institutions whose notices are missing or refused)."""
        ctx = self.ctx
        found, missing = {}, []
        for member in ctx.roster:
            doc = ctx.notices.mine(ROUND, kind) if member == ctx.address else ctx.notices.read(member, ROUND, kind)
            problem = None if doc is None else problem_of(doc, member)
            if doc is None or problem:
                missing.append(ctx.name(member))
                if problem and self.refused.get(member) != problem:
                    self.refused[member] = problem
                    ctx.log.warning("the %s %s posted is refused: %s", kind, ctx.name(member), problem)
                continue
            found[member] = doc
        if missing:
            return waiting(f"the consortium's standardization: the {kind} of {', '.join(missing)}")
        return found


def _lower_hex(value: Any, min_length: int, max_length: int) -> bool:
    return (isinstance(value, str) and min_length <= len(value) <= max_length
            and all(c in "0123456789abcdef" for c in value))


def _key_problem(key: Any) -> str | None:
    return None if _lower_hex(key, 64, 64) else "its key is not 32 bytes in lowercase hex"


def _masked_problem(vector: Any, size: int) -> str | None:
    ok = isinstance(vector, list) and len(vector) == size and all(_lower_hex(x, 1, 32) for x in vector)
    return None if ok else f"its masked vector is not {size} numbers below 2**128 in lowercase hex"


def _totals_problem(totals: Mapping[str, Any]) -> str | None:
    """What is impossible about the consortium's totals (None if nothing)."""
    n = totals["n"]
    if not 2 <= n <= MAX_RECORDS * MAX_INSTITUTIONS:
        return f"{n} rows in all"
    if _squares_fall_short(totals, n, floor=-1e-6):
        return "a sum of squares is smaller than its sum allows"
    return None
