"""The research question's hypotheses, each with its evidence and a verdict computed from it.

Every hypothesis says "model B is more accurate than model A" on the same hands. Its evidence:

* ``diff`` = accuracy of B minus accuracy of A on the hands both scored (the evaluation's common hands);
* its 95% interval: a paired percentile bootstrap of the hands. Resampling ``n`` hands with replacement
  draws the four cells (both right, only A right, only B right, both wrong) as multinomial(``n``, cell
  shares), so the resamples are drawn as counts (seeded: :data:`SEED`) and need only the discordant counts;
* McNemar's p (from ``pairwise.csv`` / ``end_to_end.csv``), Holm-adjusted over *the hypotheses tested here*
  (one family: the seed's three plus any end-to-end and handedness ones), not over all pairs of models.

The verdict follows mechanically (:func:`verdict`): "supported" only when B is ahead and ``p_holm < alpha``;
"contradicted (significant difference the other way)" when A is significantly ahead; otherwise "no
detectable difference at n = N". A hypothesis whose models are not in the evaluation is "not tested".

Models are found by run name (:func:`resolve_run`): the run named exactly as the role (``gcn``); else the
runs whose checkpoint records that model name (``kinds``: run -> ``model_name``), else the runs named
``<role>_...``; of several, the one whose name is a prefix of all the others (``gcn_crops`` before
``gcn_crops_handedness``), and none (not tested, the candidates named) when there is no such run.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from engine.metrics import holm_adjust
from engine.reporting.tables import format_p, markdown_table, read_csv_rows, to_float

__all__ = ["Hypothesis", "SEED_HYPOTHESES", "resolve_run", "verdict", "paired_diff_ci", "hypotheses_table",
           "hypotheses_from_comparison", "hypotheses_from_graphs", "hypotheses_cells", "hypotheses_markdown",
           "HYPOTHESIS_HEADERS", "HYPOTHESIS_ALIGN", "HANDEDNESS_SUFFIX"]

#: Defaults of every hypothesis test (one place): significance level when the evaluation records none,
#: bootstrap resamples of the paired difference and their seed, the interval's confidence.
ALPHA = 0.05
N_BOOT = 10_000
SEED = 0
CONFIDENCE = 0.95
#: A run ``X_handedness`` is model ``X`` trained with the handedness input.
HANDEDNESS_SUFFIX = "_handedness"

#: The seed's hypotheses: (id, claim, A = the model expected to lose, B = the model(s) expected to win).
#: For H3 A is the better (on the common hands) of the two listed.
SEED_HYPOTHESES = (
    ("H1", "The GCN beats the landmark MLP", ("mlp",), "gcn"),
    ("H2", "ResNet-34 beats the small CNN", ("cnn",), "resnet34"),
    ("H3", "Late fusion beats both ResNet-34 and the GCN (tested against the better of the two)",
     ("resnet34", "gcn"), "fusion"),
)

SUPPORTED = "supported"
CONTRADICTED = "contradicted (significant difference the other way)"


@dataclass
class Hypothesis:
    """One hypothesis "B beats A" and its evidence (fractions; ``diff`` = acc_b - acc_a)."""

    id: str
    claim: str
    model_a: str = ""
    model_b: str = ""
    n: int = 0
    acc_a: float = float("nan")
    acc_b: float = float("nan")
    a_only: int = 0  # hands only A got right
    b_only: int = 0  # hands only B got right
    diff: float = float("nan")
    diff_low: float = float("nan")
    diff_high: float = float("nan")
    p_value: float = float("nan")
    p_holm: float = float("nan")
    verdict: str = ""
    note: str = ""

    @property
    def tested(self) -> bool:
        return self.n > 0 and not math.isnan(self.p_value)


# --------------------------------------------------------------------------- the rules


def verdict(diff: float, p_holm: float, alpha: float, n: int) -> str:
    """The one-line verdict on "B beats A" from its numbers (see the module docstring)."""
    if n <= 0 or math.isnan(p_holm) or math.isnan(diff):
        return "not tested"
    if p_holm < alpha and diff > 0:
        return SUPPORTED
    if p_holm < alpha and diff < 0:
        return CONTRADICTED
    return f"no detectable difference at n = {n:,}"


def paired_diff_ci(n: int, a_only: int, b_only: int, *, n_boot: int = N_BOOT, seed: int = SEED,
                   confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of ``(b_only - a_only) / n``, resampling the ``n`` paired hands
    (drawn as multinomial counts of the discordant cells; NaNs for no hands)."""
    if n <= 0:
        return float("nan"), float("nan")
    shares = np.array([a_only, b_only, n - a_only - b_only], dtype=np.float64) / n
    draws = np.random.default_rng(seed).multinomial(n, shares, size=n_boot)
    values = (draws[:, 1] - draws[:, 0]) / n
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def resolve_run(role: str, runs: Sequence[str], kinds: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """The run that plays ``role`` (a model name) among ``runs``, and why not when none does."""
    if role in runs:
        return role, ""
    kinds = kinds or {}
    found = [r for r in runs if kinds.get(r) == role] or [r for r in runs if r.startswith(role + "_")]
    if not found:
        return None, f"no {role} run in this evaluation"
    first = min(found, key=len)
    if all(r.startswith(first) for r in found):
        return first, ""
    return None, f"several {role} runs ({', '.join(found)}), none a prefix of the others"


# --------------------------------------------------------------------------- building the table


def _pair_lookup(pairwise: Sequence[Mapping]) -> dict[tuple[str, str], dict]:
    """McNemar rows by (A, B) in both orders, cells oriented: ``a_only`` = only the first model right."""
    out = {}
    for r in pairwise:
        a, b = str(r.get("model_a", "")), str(r.get("model_b", ""))
        base = {"n": int(to_float(r.get("n"))), "p_value": to_float(r.get("p_value"))}
        nb, nc = int(to_float(r.get("b"))), int(to_float(r.get("c")))
        acc_a, acc_b = to_float(r.get("acc_a")), to_float(r.get("acc_b"))
        out[(a, b)] = {**base, "acc_a": acc_a, "acc_b": acc_b, "a_only": nb, "b_only": nc}
        out[(b, a)] = {**base, "acc_a": acc_b, "acc_b": acc_a, "a_only": nc, "b_only": nb}
    return out


def _seed_hypotheses(pairs: dict, runs: Sequence[str], kinds: Mapping[str, str] | None) -> list[Hypothesis]:
    """H1-H3 with their McNemar cells (not yet adjusted)."""
    out = []
    for hid, claim, losers, winner in SEED_HYPOTHESES:
        h = Hypothesis(hid, claim)
        b, why = resolve_run(winner, runs, kinds)
        found = [resolve_run(m, runs, kinds) for m in losers]
        cands = [r for r, _ in found if r]
        if b is None or not cands:
            h.note = why or "; ".join(w for r, w in found if not r)
            out.append(h)
            continue
        a = max(cands, key=lambda r: pairs.get((r, b), {}).get("acc_a", float("-inf")))
        if len(losers) > 1:
            others = [f"{r} {100 * pairs[(r, b)]['acc_a']:.1f}%" for r in cands if (r, b) in pairs]
            missing = [w for r, w in found if not r]
            h.note = (f"{a} is the better of {', '.join(others)} on the common hands"
                      + (f" ({'; '.join(missing)})" if missing else ""))
        _fill(h, a, b, pairs.get((a, b)))
        out.append(h)
    return out


def _fill(h: Hypothesis, a: str, b: str, cells: Mapping | None) -> None:
    h.model_a, h.model_b = a, b
    if cells is None:
        h.note = (h.note + "; " if h.note else "") + f"no McNemar test of {a} and {b} in the evaluation"
        return
    for k in ("n", "acc_a", "acc_b", "a_only", "b_only", "p_value"):
        setattr(h, k, cells[k])
    h.diff = (h.b_only - h.a_only) / h.n if h.n else float("nan")


def _handedness_hypotheses(pairs: dict, runs: Sequence[str]) -> list[Hypothesis]:
    """One hypothesis per pair of runs ``X`` and ``X_handedness`` in the evaluation."""
    out = []
    for x in runs:
        y = x + HANDEDNESS_SUFFIX
        if y in runs:
            h = Hypothesis(f"HD-{x}", f"{x}: the handedness input makes it more accurate")
            _fill(h, x, y, pairs.get((x, y)))
            out.append(h)
    return out


def _end_to_end_hypotheses(rows: Sequence[Mapping]) -> list[Hypothesis]:
    """Per model of ``end_to_end.csv``: the annotated box (B) beats the detector's box end to end (A).
    end_to_end's McNemar has b = right on the annotated box only, c = right end to end only."""
    out = []
    for r in rows:
        m = str(r.get("model", ""))
        h = Hypothesis(f"E2E-{m}", f"{m}: annotated boxes beat detected boxes (end to end)")
        n = int(to_float(r.get("n_hands")))
        cells = {"n": n, "acc_a": to_float(r.get("e2e_accuracy")), "acc_b": to_float(r.get("annotated_accuracy")),
                 "a_only": int(to_float(r.get("mcnemar_c"))), "b_only": int(to_float(r.get("mcnemar_b"))),
                 "p_value": to_float(r.get("mcnemar_p"))}
        _fill(h, f"{m} end to end", f"{m} annotated", cells if n > 0 else None)
        out.append(h)
    return out


def hypotheses_table(
    pairwise: Sequence[Mapping],
    *,
    kinds: Mapping[str, str] | None = None,
    runs: Sequence[str] | None = None,
    end_to_end: Sequence[Mapping] = (),
    alpha: float = ALPHA,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> list[Hypothesis]:
    """Every hypothesis with its difference, interval, Holm-adjusted p and verdict.

    ``pairwise``: McNemar rows (``Comparison.pairwise`` or ``pairwise.csv`` read back); ``runs``: the
    evaluation's run names (default: those in ``pairwise``); ``kinds``: run -> recorded model name;
    ``end_to_end``: rows of ``end_to_end.csv``. Pure: no files read."""
    pairs = _pair_lookup(pairwise)
    if runs is None:
        runs = list(dict.fromkeys(k for ab in pairs for k in ab))
    hyps = (_seed_hypotheses(pairs, runs, kinds) + _handedness_hypotheses(pairs, runs)
            + _end_to_end_hypotheses(end_to_end))
    tested = [h for h in hyps if h.tested]
    for h, ph in zip(tested, holm_adjust([h.p_value for h in tested])):
        h.p_holm = ph
    for h in hyps:
        if h.tested:
            h.diff_low, h.diff_high = paired_diff_ci(h.n, h.a_only, h.b_only, n_boot=n_boot, seed=seed)
        h.verdict = verdict(h.diff, h.p_holm, alpha, h.n)
    return hyps


def hypotheses_from_comparison(comparison, kinds: Mapping[str, str] | None = None, **kw) -> list[Hypothesis]:
    """:func:`hypotheses_table` of a :class:`~engine.metrics.Comparison` (its alpha and runs)."""
    kw.setdefault("alpha", comparison.alpha)
    return hypotheses_table(comparison.pairwise, kinds=kinds, runs=list(comparison.models), **kw)


def hypotheses_from_graphs(graphs_dir, kinds: Mapping[str, str] | None = None) -> list[Hypothesis]:
    """:func:`hypotheses_table` from the artefacts in ``graphs_dir``: ``pairwise.csv``, ``evaluation.json``
    (alpha, run names) and ``end_to_end.csv`` when present. ``FileNotFoundError`` without ``pairwise.csv``."""
    g = Path(graphs_dir)
    pairwise = read_csv_rows(g / "pairwise.csv")
    e2e = read_csv_rows(g / "end_to_end.csv") if (g / "end_to_end.csv").is_file() else []
    return hypotheses_table(pairwise, kinds=kinds, runs=_meta(g).get("models") or None, end_to_end=e2e,
                            alpha=graphs_alpha(g))


def _meta(g: Path) -> dict:
    path = g / "evaluation.json"
    meta = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return meta if isinstance(meta, dict) else {}


def graphs_alpha(graphs_dir) -> float:
    """The significance level the evaluation in ``graphs_dir`` recorded (:data:`ALPHA` when none)."""
    alpha = to_float(_meta(Path(graphs_dir)).get("alpha"))
    return ALPHA if math.isnan(alpha) else alpha


# --------------------------------------------------------------------------- formatting

HYPOTHESIS_HEADERS = ("#", "hypothesis", "A", "B", "n", "acc A %", "acc B %", "B − A (pt) [95% CI]",
                      "only A / only B right", "p (McNemar)", "p (Holm)", "verdict")
HYPOTHESIS_ALIGN = ("l", "l", "l", "l", "r", "r", "r", "r", "r", "r", "r", "l")


def _pt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:+.1f}"


def hypotheses_cells(hyps: Sequence[Hypothesis]) -> list[list[str]]:
    """The formatted cells of :data:`HYPOTHESIS_HEADERS`, one row per hypothesis (accuracies in %)."""
    rows = []
    for h in hyps:
        pct = (lambda x: "n/a" if math.isnan(x) else f"{100 * x:.1f}")
        ci = f"{_pt(h.diff)} [{_pt(h.diff_low)}, {_pt(h.diff_high)}]" if h.tested else "n/a"
        rows.append([h.id, h.claim + (f" ({h.note})" if h.note else ""), h.model_a or "n/a", h.model_b or "n/a",
                     f"{h.n:,}" if h.n else "n/a", pct(h.acc_a), pct(h.acc_b), ci,
                     f"{h.a_only} / {h.b_only}" if h.tested else "n/a", format_p(h.p_value), format_p(h.p_holm),
                     h.verdict])
    return rows


def hypotheses_explanation(alpha: float = ALPHA) -> str:
    return (f"Each row tests \"B is more accurate than A\" on the hands both models scored (n). B − A in "
            f"percentage points with its {CONFIDENCE:.0%} paired bootstrap interval ({N_BOOT:,} resamples, "
            f"seed {SEED}); McNemar's test on the hands only one of the two got right, Holm-adjusted over the "
            f"hypotheses tested in this table. Verdict: \"supported\" when B is ahead and p (Holm) < {alpha:g}; "
            "\"contradicted\" when A is significantly ahead; otherwise no detectable difference at that n.")


def hypotheses_markdown(graphs_dir, kinds: Mapping[str, str] | None = None) -> str:
    """The verdicts table as Markdown (explanation and table) from the artefacts in ``graphs_dir``."""
    hyps = hypotheses_from_graphs(graphs_dir, kinds)
    table = markdown_table(HYPOTHESIS_HEADERS, hypotheses_cells(hyps), HYPOTHESIS_ALIGN)
    return hypotheses_explanation(graphs_alpha(graphs_dir)) + "\n\n" + table + "\n"


def hypothesis_dicts(hyps: Sequence[Hypothesis]) -> list[dict]:
    """Plain dicts (for a CSV or JSON)."""
    return [asdict(h) for h in hyps]
