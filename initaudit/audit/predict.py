"""What an init recipe predicts for a tensor's values: its distribution, mean, std and range.

:func:`predict` reads a readable init call and its arguments (as the tracer records them) and
returns a :class:`Prediction`, or None when the call has no known distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: Machine epsilon of each floating dtype, by name (the range check's tolerance scale).
EPS = {"float64": 2.3e-16, "float32": 1.2e-7, "float16": 9.8e-4, "bfloat16": 7.9e-3}


@dataclass
class Prediction:
    """What an init recipe predicts for a tensor's values."""

    recipe: str  # readable, e.g. "U(-0.19, 0.19)" or "N(0, 0.118)" or "= -13"
    mean: float
    std: float
    low: float | None = None
    high: float | None = None
    kurtosis: float = 3.0  # of one draw; sets the standard error of the sample std
    constant: bool = False
    #: The distribution itself, for plotting its density: ``uniform`` (low, high), ``normal``
    #: (mean, std), ``truncnormal`` (the parent normal's mean and std, low, high), ``constant``.
    dist: str = "normal"
    params: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """This prediction as a JSON-compatible dict."""
        return {
            "recipe": self.recipe,
            "mean": self.mean,
            "std": self.std,
            "low": self.low,
            "high": self.high,
        }


def finite_number(v: Any) -> float | None:
    """The value as a float when it is a finite real number (not a bool), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def short_number(x: float) -> str:
    """A number in at most four significant digits, as reports print recipes."""
    return f"{x:.4g}"


def _uniform(lo: float, hi: float) -> Prediction:
    return Prediction(
        recipe=f"U({short_number(lo)}, {short_number(hi)})",
        mean=(lo + hi) / 2,
        std=(hi - lo) / math.sqrt(12),
        low=lo,
        high=hi,
        kurtosis=1.8,
        dist="uniform",
        params={"low": lo, "high": hi},
    )


def _normal(mean: float, std: float) -> Prediction:
    return Prediction(
        recipe=f"N({short_number(mean)}, {short_number(std)})",
        mean=mean,
        std=std,
        dist="normal",
        params={"mean": mean, "std": std},
    )


def _constant(v: float) -> Prediction:
    return Prediction(
        recipe=f"= {short_number(v)}",
        mean=v,
        std=0.0,
        low=v,
        high=v,
        constant=True,
        dist="constant",
        params={"value": v},
    )


def _phi(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _Phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _trunc_normal(mean: float, std: float, a: float, b: float) -> Prediction | None:
    if std <= 0 or b <= a:
        return None
    al, be = (a - mean) / std, (b - mean) / std
    z = _Phi(be) - _Phi(al)
    if z <= 1e-12:
        return None
    d = (_phi(al) - _phi(be)) / z
    var = std * std * (1 + (al * _phi(al) - be * _phi(be)) / z - d * d)
    return Prediction(
        recipe=f"TN({short_number(mean)}, {short_number(std)}, [{short_number(a)}, {short_number(b)}])",
        mean=mean + std * d,
        std=math.sqrt(max(var, 0.0)),
        low=a,
        high=b,
        kurtosis=3.0,  # at most 3: using 3 only widens the standard error (fewer alarms)
        dist="truncnormal",
        params={"mean": mean, "std": std, "low": a, "high": b},
    )


def predict(call: str | None, args: dict[str, Any]) -> Prediction | None:
    """What the values of a tensor set by ``call(**args)`` should look like, when known."""
    if call is None:
        return None
    a = args
    if call == "kaiming_uniform_":
        bound = finite_number(a.get("bound"))
        return _uniform(-bound, bound) if bound is not None else None
    if call == "xavier_uniform_":
        std = finite_number(a.get("std"))
        return _uniform(-math.sqrt(3) * std, math.sqrt(3) * std) if std is not None else None
    if call in ("kaiming_normal_", "xavier_normal_"):
        std = finite_number(a.get("std"))
        return _normal(0.0, std) if std is not None else None
    if call == "uniform_":
        if "from" in a or "to" in a:  # Tensor.uniform_ (ATen names)
            lo, hi = finite_number(a.get("from", 0.0)), finite_number(a.get("to", 1.0))
        else:  # nn.init.uniform_
            lo, hi = finite_number(a.get("a", 0.0)), finite_number(a.get("b", 1.0))
        return _uniform(lo, hi) if lo is not None and hi is not None and hi >= lo else None
    if call in ("normal_", "normal"):
        mean, std = finite_number(a.get("mean", 0.0)), finite_number(a.get("std", 1.0))
        return _normal(mean, std) if mean is not None and std is not None else None
    if call == "trunc_normal_":
        vals = [
            finite_number(a.get(k, d))
            for k, d in (("mean", 0.0), ("std", 1.0), ("a", -2.0), ("b", 2.0))
        ]
        return _trunc_normal(*vals) if None not in vals else None  # type: ignore[arg-type]
    if call in ("randn", "randn_like"):
        return _normal(0.0, 1.0)
    if call in ("rand", "rand_like"):
        return _uniform(0.0, 1.0)
    if call in ("zeros_", "zero_", "zeros", "zeros_like", "new_zeros"):
        return _constant(0.0)
    if call in ("ones_", "ones", "ones_like", "new_ones"):
        return _constant(1.0)
    if call in ("constant_", "fill_", "full", "full_like", "new_full"):
        v = finite_number(a.get("val", a.get("value", a.get("fill_value"))))
        return _constant(v) if v is not None else None
    return None
