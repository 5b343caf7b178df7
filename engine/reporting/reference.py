"""The seed project's reference figures, and the arithmetic that puts them beside ours.

The seed reported HaGRID test accuracies (README, "Reference results to beat") and claimed that late fusion
beats ResNet-34 by +0.02 pt. Whether that difference is evidence depends on its interval, computed here
from the accuracies and the test-set size with a normal approximation for paired proportions
(:func:`paired_halfwidth`), since the seed reported no per-hand or discordant counts.
"""
from __future__ import annotations

import math

from scipy import stats

__all__ = ["SEED_ACCURACY", "SEED_TEST_HANDS", "SEED_SETUP", "paired_halfwidth", "single_halfwidth",
           "fusion_caveat"]

#: The seed's HaGRID test accuracies in % (README), by model name.
SEED_ACCURACY = {"mlp": 98.76, "cnn": 52.95, "gcn": 97.79, "resnet34": 99.70, "fusion": 99.72}
#: About how many test hands the seed's accuracies are over (HaGRID test split, "n ≈ 90k").
SEED_TEST_HANDS = 90_000
#: What the seed's set-up was, for the "what differs" table (aspect -> the seed's side).
SEED_SETUP = {
    "data": f"full HaGRID (test split ≈ {SEED_TEST_HANDS:,} hands)",
    "boxes": "annotated HaGRID boxes",
    "split": "HaGRID's own train/test split",
    "ImageNet weights": "ImageNet-pretrained ResNet-34",
}
CONFIDENCE = 0.95


def _z(confidence: float = CONFIDENCE) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def paired_halfwidth(n: int, acc_a: float, acc_b: float, confidence: float = CONFIDENCE) -> float:
    """Half-width of the normal-approximation interval of ``acc_b - acc_a`` on the same ``n`` hands,
    assuming the two models' errors are independent: discordant shares ``p10 = acc_a (1 - acc_b)`` and
    ``p01 = acc_b (1 - acc_a)``, ``var = (p10 + p01 - (p01 - p10)^2) / n``. (Errors that overlap make it
    narrower; how much, only the discordant counts can say.) Accuracies as fractions."""
    p10, p01 = acc_a * (1 - acc_b), acc_b * (1 - acc_a)
    return _z(confidence) * math.sqrt(max(p10 + p01 - (p01 - p10) ** 2, 0.0) / n)


def single_halfwidth(n: int, acc: float, confidence: float = CONFIDENCE) -> float:
    """Half-width of the normal-approximation (Wald) interval of one accuracy over ``n`` hands."""
    return _z(confidence) * math.sqrt(acc * (1 - acc) / n)


def fusion_caveat(n: int = SEED_TEST_HANDS, acc_a: float = SEED_ACCURACY["resnet34"] / 100,
                  acc_b: float = SEED_ACCURACY["fusion"] / 100) -> str:
    """The sentence on the seed's "fusion beats ResNet-34" claim, its numbers computed."""
    diff = 100 * (acc_b - acc_a)
    hw = 100 * paired_halfwidth(n, acc_a, acc_b)
    one = 100 * single_halfwidth(n, acc_a)
    return (f"The seed's fusion claim: {diff:+.2f} pt over ResNet-34 at n ≈ {n:,}. Its {CONFIDENCE:.0%} interval "
            f"is about ±{hw:.3f} pt (normal approximation for paired proportions, assuming the two models' "
            f"errors are independent; the seed reported no discordant counts or McNemar test); even the interval "
            f"of one accuracy alone is ±{one:.3f} pt. So it is not evidence that fusion beats ResNet-34 — only "
            "errors overlapping almost entirely between the two models would make it one, and that was not shown.")
