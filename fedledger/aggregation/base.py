"""The Strategy interface and the input validation every aggregation rule shares.

A strategy is a small frozen dataclass of hyperparameters (one class per rule, as in Flower).
`aggregate` is a pure function: it validates all inputs, maps them to fixed point, lets the rule
compute a step, and maps the new model back, so every rule inherits order independence and
reproducibility from `fixedpoint`.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fedledger.aggregation import fixedpoint as fx
from fedledger.errors import ConfigError, UpdateRejected
from fedledger.params import vector_problem


@dataclass(frozen=True, eq=False)
class ClientUpdate:
    """One client's locally trained parameters (not a delta) and its weight."""

    client: str            # institution id or address; appears in error messages only
    params: np.ndarray     # float32, 1-D, same length as the global model
    num_samples: int       # > 0: the update's weight in the average


def _vector_problem(params: object, size: int | None) -> str | None:
    """Why `params` is not a usable parameter vector (None if it is)."""
    problem = vector_problem(params)
    if problem:
        return problem
    if size is not None and params.size != size:
        return f"has {params.size} parameters, the global model has {size}"
    peak = fx.peak(params)
    if peak > fx.MAX_ABS:
        return f"a parameter has magnitude {peak:.6g}, above the fixed-point bound {fx.MAX_ABS:g}"
    return None


def _update_problem(update: object, size: int, seen: set[str]) -> str | None:
    if not isinstance(update, ClientUpdate):
        return f"expected a ClientUpdate, got {type(update).__name__}"
    if update.client in seen:
        return "second update from the same client in this round"
    n = update.num_samples
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        return f"num_samples is {n!r}, expected a positive integer"
    if not 0 < n <= fx.MAX_TOTAL_SAMPLES:
        return f"num_samples is {n}, expected 1 to {fx.MAX_TOTAL_SAMPLES}"
    return _vector_problem(update.params, size)


def update_problem(update: ClientUpdate, size: int) -> str | None:
    """Why the aggregation would refuse this update on its own (None if it would accept it).

    Coordinators screen with this before aggregating, so one bad update is rejected with its
    reason instead of failing the whole round.
    """
    return _update_problem(update, size, set())


def check_updates(global_params: np.ndarray, updates: Sequence[ClientUpdate]) -> None:
    """Raise UpdateRejected naming the first bad input (the global model or a client)."""
    problem = _vector_problem(global_params, None)
    if problem:
        raise UpdateRejected(f"global model rejected: {problem}")
    if not updates:
        raise UpdateRejected("no client updates to aggregate")
    seen: set[str] = set()
    for update in updates:
        client = getattr(update, "client", None)
        if not isinstance(client, str) or not client:
            raise UpdateRejected(f"update rejected: client id {client!r} is not a non-empty string")
        problem = _update_problem(update, global_params.size, seen)
        if problem:
            raise UpdateRejected(f"update from {client} rejected: {problem}")
        seen.add(client)
    total = sum(int(u.num_samples) for u in updates)
    if total > fx.MAX_TOTAL_SAMPLES:
        largest = max(updates, key=lambda u: u.num_samples)
        raise UpdateRejected(f"updates weigh {total} samples in all, above the fixed-point limit "
                             f"{fx.MAX_TOTAL_SAMPLES} (largest: {largest.client} with {largest.num_samples})")


def check_real(strategy: str, name: str, value: object, allowed: str, ok: Callable[[float], bool]) -> float:
    """A hyperparameter as a float, or ConfigError naming it and what is allowed."""
    if not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating)):
        x = float(value)
        if math.isfinite(x) and ok(x):
            return x
    raise ConfigError(f"{strategy}: {name} must be a number in {allowed}, got {value!r}")


def check_int(strategy: str, name: str, value: object, allowed: str, ok: Callable[[int], bool]) -> int:
    """A hyperparameter as an int, or ConfigError naming it and what is allowed.

    Integer-valued floats are accepted (TOML configs give [aggregation].params as floats, so
    `byzantine = 2` may arrive as 2.0); booleans, strings, NaN and fractions are not.
    """
    x: int | None = None
    if not isinstance(value, bool) and isinstance(value, (int, np.integer)):
        x = int(value)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        x = int(value)
    if x is not None and ok(x):
        return x
    raise ConfigError(f"{strategy}: {name} must be an integer in {allowed}, got {value!r}")


class Strategy(ABC):
    """An aggregation rule. Subclasses are frozen dataclasses whose fields are the hyperparameters."""

    name: ClassVar[str]
    # SCAFFOLD: the global vector is the model followed by the server's control variate
    control_variates: ClassVar[bool] = False

    def client_config(self) -> dict[str, float]:
        """What clients need for local training (e.g. FedProx's proximal weight)."""
        return {}

    def initial_state(self, global_params: np.ndarray) -> dict[str, np.ndarray]:
        """Server-optimizer state before the first round (none by default)."""
        return {}

    def params(self) -> dict[str, float | str]:
        """Hyperparameters, JSON-able: make_strategy(s.name, **s.params()) rebuilds the same rule."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def aggregate(self, global_params: np.ndarray, updates: Sequence[ClientUpdate],
                  state: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """New global parameters (float32) and server state; the same bytes in any update order.

        Raises UpdateRejected naming the client (or the global model or server state) if any input
        is invalid; nothing is aggregated then. Inputs are never modified.
        """
        updates = list(updates)
        check_updates(global_params, updates)
        self._check_state(state, global_params.size)
        if not self.combines_individually:
            # The weighted mean needs only the sum, which `weighted_sum` takes without stacking.
            weighted = fx.weighted_sum([u.params for u in updates], [u.num_samples for u in updates])
            total = sum(int(u.num_samples) for u in updates)
            return self._step_from_sum(global_params, weighted, total, state)
        g = fx.to_fixed(global_params)
        locals_q = np.stack([fx.to_fixed(u.params) for u in updates])
        weights = np.array([int(u.num_samples) for u in updates], dtype=np.int64)
        return self._step_to(g, self._combine(g, locals_q, weights), state)

    @property
    def combines_individually(self) -> bool:
        """Whether the rule looks at each update (a robust rule), not only at their weighted mean:
        such a rule cannot run on a secure aggregate, which reveals only the sum."""
        return type(self)._combine is not Strategy._combine

    def aggregate_sum(self, global_params: np.ndarray, weighted_sum: np.ndarray, total_weight: int,
                      state: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """`aggregate` from the sum of the updates' sample-weighted fixed-point parameters (int64)
        and their total weight, as secure aggregation gives them: the same bytes `aggregate` gives
        for those updates. Only for rules that need no more than the weighted mean."""
        if self.combines_individually:
            raise ConfigError(f"{self.name} needs each update, not only their sum")
        problem = _vector_problem(global_params, None)
        if problem:
            raise UpdateRejected(f"global model rejected: {problem}")
        if weighted_sum.shape != global_params.shape or weighted_sum.dtype != np.int64:
            raise UpdateRejected(f"the sum has shape {weighted_sum.shape} and dtype {weighted_sum.dtype}, "
                                 f"expected int64 of shape {global_params.shape}")
        if not 0 < total_weight <= fx.MAX_TOTAL_SAMPLES:
            raise UpdateRejected(f"the updates weigh {total_weight} samples in all, expected 1 to "
                                 f"{fx.MAX_TOTAL_SAMPLES}")
        self._check_state(state, global_params.size)
        return self._step_from_sum(global_params, weighted_sum, total_weight, state)

    def _step_from_sum(self, global_params: np.ndarray, weighted_sum: np.ndarray, total_weight: int,
                       state: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        mean = fx.divide_rounded(weighted_sum, total_weight)
        if fx.peak(mean) > fx.MAX_FIXED:
            raise UpdateRejected("the mean of the updates exceeds the fixed-point bound: some update "
                                 f"has a parameter beyond {fx.MAX_ABS:g}")
        return self._step_to(fx.to_fixed(global_params), mean, state)

    def _step_to(self, g: np.ndarray, combined: np.ndarray, state: Mapping[str, np.ndarray]
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The new model and state from the clients' combined parameters (fixed point)."""
        delta = fx.to_float(combined - g)
        step, new_state = self._server_step(delta, state)
        # Bounding the step before rint keeps the float -> int64 cast defined (NaN or huge values
        # would wrap); the bound on the result keeps the next round's input in range.
        if not fx.peak(step) <= 2 * fx.MAX_ABS:   # False for NaN too
            raise UpdateRejected(f"{self.name}: the server step leaves the fixed-point range; "
                                 f"lower server_lr")
        new = g + fx.to_fixed(step)
        if fx.peak(new) > fx.MAX_FIXED:
            raise UpdateRejected(f"{self.name}: the new global model exceeds the fixed-point bound "
                                 f"{fx.MAX_ABS:g}; lower server_lr")
        return fx.to_float32(new), new_state

    def _combine(self, g: np.ndarray, locals_q: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The clients' parameters (fixed point, clients x params) combined into one vector on the
        grid: the sample-weighted mean, unless a robust rule says otherwise. `g` is the global
        model on the grid (for rules that look at each client's change, e.g. norm clipping);
        `weights` are the sample counts (int64). All |values| <= MAX_FIXED and the weights sum to
        at most MAX_TOTAL_SAMPLES; the result must stay within MAX_FIXED too. Integer operations
        only, so the result does not depend on the clients' order. Must not modify its inputs."""
        return fx.weighted_mean(locals_q, weights)

    def _check_state(self, state: Mapping[str, np.ndarray], size: int) -> None:
        if state:
            raise UpdateRejected(f"server state rejected: {self.name} keeps no state, got {sorted(state)}")

    @abstractmethod
    def _server_step(self, delta: np.ndarray, state: Mapping[str, np.ndarray]
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Parameter change (float64) from the pseudo-gradient `delta` = weighted mean of
        (local - global), which is exact on the fixed-point grid; and the new state.

        Only elementwise IEEE operations (+ - * / sqrt, correctly rounded) are allowed here: they
        give the same bits on every machine, unlike reductions or transcendental functions.
        """
