"""The uplift statistics both tiers share: Newcombe's published figures and the interval's
properties over every count a store can produce."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.uplift import newcombe_difference, uplift, wilson

# Newcombe RG (1998), "Interval estimation for the difference between independent proportions:
# comparison of eleven methods", Stat Med 17:873-890, Table II, method 10 (hybrid score, no
# continuity correction), 95%, to the four decimals printed there.
TABLE_II = [
    ((56, 70, 48, 80), 0.2000, (0.0524, 0.3339)),  # (a), the worked example in the text
    ((9, 10, 3, 10), 0.6000, (0.1705, 0.8090)),
    ((6, 7, 2, 7), 0.5714, (0.0582, 0.8062)),
    ((5, 56, 0, 29), 0.0893, (-0.0381, 0.1926)),
    ((0, 10, 0, 20), 0.0000, (-0.1611, 0.2775)),
    ((0, 10, 0, 10), 0.0000, (-0.2775, 0.2775)),
    ((10, 10, 0, 20), 1.0000, (0.6791, 1.0000)),
    ((10, 10, 0, 10), 1.0000, (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "diff", "interval"), TABLE_II, ids=lambda v: str(v))
def test_newcombe_table_ii_method_10(counts, diff, interval) -> None:
    x1, n1, x2, n2 = counts
    u = uplift(x1, n1, x2, n2)
    assert round(u.difference, 4) == diff
    assert (round(u.ci_low, 4), round(u.ci_high, 4)) == interval


def test_worked_example_in_words_and_fields() -> None:
    u = uplift(56, 70, 48, 80)
    assert u.describe() == "+20.0 pts (95% CI +5.2 to +33.4)"
    assert u.as_dict() == {
        "exposed_shoppers": 70,
        "exposed_conversions": 56,
        "exposed_rate": 0.8,
        "holdout_shoppers": 80,
        "holdout_conversions": 48,
        "holdout_rate": 0.6,
        "uplift": 0.2,
        "uplift_relative": 0.3333,
        "uplift_ci_low": 0.0524,
        "uplift_ci_high": 0.3339,
    }


def test_wilson_at_the_edges_stays_in_the_unit_interval() -> None:
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and 0.27 < hi < 0.28
    lo, hi = wilson(10, 10)
    assert hi == 1.0 and 0.72 < lo < 0.73


@pytest.mark.parametrize(
    ("counts", "said"),
    [
        ((0, 0, 0, 5), "not enough data (no exposed shoppers)"),
        ((3, 9, 0, 0), "not enough data (no holdout shoppers)"),
        ((0, 0, 0, 0), "not enough data (no exposed and no holdout shoppers)"),
    ],
)
def test_an_empty_group_gives_words_not_a_number(counts, said) -> None:
    u = uplift(*counts)
    assert not u.enough_data and u.describe() == said
    assert u.difference is None and u.ci_low is None and u.ci_high is None
    assert newcombe_difference(*counts) is None
    # The side that has shoppers still has its rate; the other is unknown, not zero.
    assert (u.exposed_rate is None) == (counts[1] == 0)
    assert (u.holdout_rate is None) == (counts[3] == 0)


def test_relative_uplift_needs_a_converting_holdout() -> None:
    assert uplift(2, 10, 0, 10).relative is None  # +20 points over nothing: no ratio
    assert uplift(2, 10, 1, 10).relative == pytest.approx(1.0)


@pytest.mark.parametrize("counts", [(3, 2, 0, 1), (-1, 2, 0, 1), (0, 1, 2, 1), (0, -1, 0, 1)])
def test_counts_that_are_not_a_proportion_are_refused(counts) -> None:
    with pytest.raises(ValueError, match="conversions <= shoppers"):
        uplift(*counts)


def test_no_negative_zero_in_words() -> None:
    assert uplift(1, 3, 1, 3).describe().startswith("+0.0 pts")


@st.composite
def groups(draw: st.DrawFn, max_n: int = 400) -> tuple[int, int, int, int]:
    n1 = draw(st.integers(1, max_n))
    n2 = draw(st.integers(1, max_n))
    return draw(st.integers(0, n1)), n1, draw(st.integers(0, n2)), n2


@given(groups())
def test_interval_is_within_minus_one_one_and_contains_the_estimate(g) -> None:
    u = uplift(*g)
    assert -1.0 <= u.ci_low <= u.difference <= u.ci_high <= 1.0
    # An interval, not a point: even 0/n against 0/n leaves room either way.
    assert u.ci_low < u.ci_high


@given(groups(max_n=200), st.integers(2, 50))
def test_interval_narrows_as_the_groups_grow_at_the_same_rates(g, k) -> None:
    x1, n1, x2, n2 = g
    small = uplift(x1, n1, x2, n2)
    big = uplift(k * x1, k * n1, k * x2, k * n2)
    assert big.difference == pytest.approx(small.difference)
    assert big.ci_high - big.ci_low < small.ci_high - small.ci_low


@given(groups())
def test_swapping_the_groups_mirrors_the_interval(g) -> None:
    x1, n1, x2, n2 = g
    a, b = uplift(x1, n1, x2, n2), uplift(x2, n2, x1, n1)
    assert a.ci_low == pytest.approx(-b.ci_high, abs=1e-12)
    assert a.ci_high == pytest.approx(-b.ci_low, abs=1e-12)
