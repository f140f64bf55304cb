"""Small SVG plots of tensor values for the HTML report (matplotlib's SVG backend, no display).

Histograms are binned with torch (fast on tensors of any size) and drawn with ``stairs``, so
matplotlib never sees more than a few hundred numbers. Every function returns one ``<svg>``
element as text, ready to inline in a self-contained HTML page.
"""

from __future__ import annotations

import io
import math
import re
from functools import cache
from typing import Any

import torch

#: Histogram bins per plot.
BINS = 60
_SIZE = (4.6, 2.1)  # inches; at 72 dpi a plot is about 330 × 150 CSS pixels
_BEFORE, _AFTER, _ERROR, _PRED = "#4c78a8", "#e45756", "#72b7b2", "#222222"


@cache
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("svg", force=True)
    from matplotlib import pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text: smaller files, selectable labels
            "svg.hashsalt": "initaudit",  # stable ids: the same report renders the same bytes
            "font.size": 8,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    return plt


def _flat(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().cpu().reshape(-1)
    if t.is_complex():
        t = torch.view_as_real(t).reshape(-1)
    t = t.double() if t.dtype == torch.float64 else t.float()
    return t[torch.isfinite(t)]


def _range(*tensors: torch.Tensor) -> tuple[float, float]:
    lo = min(float(t.min()) for t in tensors if t.numel())
    hi = max(float(t.max()) for t in tensors if t.numel())
    if lo == hi:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    return lo, hi


def _hist(t: torch.Tensor, lo: float, hi: float) -> tuple[list[float], list[float]]:
    """Densities (area 1) and bin edges of ``t`` over ``[lo, hi]``."""
    counts = torch.histc(t.float(), bins=BINS, min=lo, max=hi).double()
    width = (hi - lo) / BINS
    total = float(counts.sum()) or 1.0
    edges = [lo + i * width for i in range(BINS + 1)]
    return (counts / (total * width)).tolist(), edges


def _svg(fig: Any) -> str:
    plt = _pyplot()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg") :]  # the XML prolog and DOCTYPE: not inside HTML
    # Inline SVG in HTML needs no namespace declarations, and the RDF metadata block is only
    # a creator note: dropping both keeps the page small and free of any URL.
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    return re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)


def _axes(title: str) -> tuple[Any, Any]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=_SIZE, dpi=72)
    ax.set_title(title, fontsize=8, loc="left")
    ax.tick_params(labelsize=7)
    return fig, ax


def overlay(before: torch.Tensor, after: torch.Tensor, title: str = "values") -> str:
    """Before and after value histograms of one tensor, overlaid."""
    a, b = _flat(before), _flat(after)
    fig, ax = _axes(title)
    if a.numel() or b.numel():
        lo, hi = _range(a, b)
        for t, color, label in ((a, _BEFORE, "before"), (b, _AFTER, "after")):
            if t.numel():
                dens, edges = _hist(t, lo, hi)
                ax.stairs(dens, edges, color=color, label=label, linewidth=1.2)
        ax.legend(fontsize=7, frameon=False)
    ax.set_ylabel("density", fontsize=7)
    return _svg(fig)


def error(before: torch.Tensor, after: torch.Tensor) -> str:
    """Histogram of ``after − before`` over the elements whose bits differ."""
    a = before.detach().cpu().reshape(-1)
    b = after.detach().cpu().reshape(-1)
    if a.is_complex():
        a, b = torch.view_as_real(a).reshape(-1), torch.view_as_real(b).reshape(-1)
    differ = a != b
    if a.is_floating_point():
        differ &= ~(torch.isnan(a) & torch.isnan(b))
    d = (b[differ].double() - a[differ].double()) if differ.any() else a[:0].double()
    d = d[torch.isfinite(d)]
    fig, ax = _axes(f"after − before ({int(differ.sum()):,} of {a.numel():,} elements differ)")
    if d.numel():
        lo, hi = _range(d)
        counts = torch.histc(d.float(), bins=BINS, min=lo, max=hi).tolist()
        width = (hi - lo) / BINS
        ax.stairs(counts, [lo + i * width for i in range(BINS + 1)], fill=True, color=_ERROR)
        ax.set_ylabel("elements", fontsize=7)
        if max(counts) > 50 * max(1.0, sorted(counts)[len(counts) // 2]):
            ax.set_yscale("symlog")
    return _svg(fig)


def _pdf(dist: str, params: dict[str, float], xs: list[float]) -> list[float]:
    if dist == "uniform":
        lo, hi = params["low"], params["high"]
        height = 1.0 / (hi - lo) if hi > lo else 0.0
        return [height if lo <= x <= hi else 0.0 for x in xs]
    mu, sigma = params["mean"], params["std"]
    if sigma <= 0:
        return [0.0 for _ in xs]

    def phi(z: float) -> float:
        return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    if dist == "normal":
        return [phi((x - mu) / sigma) / sigma for x in xs]
    lo, hi = params["low"], params["high"]  # truncated normal

    def cdf(z: float) -> float:
        return 0.5 * (1 + math.erf(z / math.sqrt(2)))

    mass = cdf((hi - mu) / sigma) - cdf((lo - mu) / sigma)
    if mass <= 0:
        return [0.0 for _ in xs]
    return [phi((x - mu) / sigma) / (sigma * mass) if lo <= x <= hi else 0.0 for x in xs]


def against_recipe(
    values: torch.Tensor, dist: str | None, params: dict[str, float], title: str
) -> str:
    """A tensor's value histogram with the density its init recipe predicts drawn over it.

    ``dist`` is ``uniform`` (``low``/``high``), ``normal`` (``mean``/``std``), ``truncnormal``
    (``mean``/``std`` of the parent normal, ``low``/``high`` truncation points), ``constant``
    (``value``) or None (no prediction: the histogram alone).
    """
    v = _flat(values)
    fig, ax = _axes(title)
    if v.numel():
        lo, hi = _range(v)
        if dist in ("uniform", "truncnormal"):
            lo, hi = min(lo, params["low"]), max(hi, params["high"])
        elif dist == "normal" and params["std"] > 0:
            lo = min(lo, params["mean"] - 4 * params["std"])
            hi = max(hi, params["mean"] + 4 * params["std"])
        dens, edges = _hist(v, lo, hi)
        ax.stairs(dens, edges, fill=True, color=_BEFORE, alpha=0.55, label="observed")
        if dist == "constant":
            ax.axvline(params["value"], color=_PRED, linestyle="--", linewidth=1, label="recipe")
        elif dist is not None:
            n = 241
            xs = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
            ax.plot(xs, _pdf(dist, params, xs), color=_PRED, linewidth=1, label="recipe")
            for key in ("low", "high"):
                if key in params:
                    ax.axvline(params[key], color=_PRED, linestyle=":", linewidth=0.8)
        ax.legend(fontsize=7, frameon=False)
    ax.set_ylabel("density", fontsize=7)
    return _svg(fig)
