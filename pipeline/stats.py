"""Trial statistics: compare two treatment arms on every endpoint and interval.

Estimates compare the FIRST arm given (e.g. ``IDG``) with the SECOND, the reference (e.g. ``TG``):
rate ratios and odds ratios are first / second, differences (Hodges-Lehmann shift, OLS) are
first - second. A ratio above 1 (or a positive difference) means more activity in the first arm.

Models, one output row each (column ``model``), for every interval present in endpoints.tsv:

=================  =========================================================================
endpoint           models
=================  =========================================================================
new_t2,            ``negbin``: negative-binomial (NB2) regression of the count on arm with offset
enlarging_t2,      log(interval length in months: each row's ``months`` column, the real visit
                   interval, where given; the configured session months otherwise), alpha
                   estimated by maximum likelihood
new_t1hypo         (statsmodels ``discrete.NegativeBinomial``, BFGS); estimate = rate ratio,
                   95 % Wald CI. ``negbin_adjusted``: the same plus the covariates (numeric as
                   is, categorical ones such as next_dmt as treatment-coded dummies, first level
                   in sorted order the reference). Falls back to ``poisson`` /
                   ``poisson_adjusted`` (GLM, quasi-Poisson scale max(1, Pearson X2/df), so the
                   CI is never narrower than Poisson's) when NB cannot be fitted: no
                   overdispersion (alpha < StatsParams.negbin_min_alpha, where the NB Hessian is
                   singular), non-convergence, a failed Hessian inversion. When one arm has no
                   event at all (separation: no finite MLE, Wald CI meaningless) the unadjusted
                   row is ``poisson_exact``: the conditional exact test of two Poisson rates
                   (given the total, the first arm's count is binomial; Clopper-Pearson CI
                   transformed to the rate ratio; Przyborowski & Wilenski 1940).
                   ``mann_whitney``: two-sided Mann-Whitney U p-value (scipy, tie-corrected
                   normal approximation when ties); estimate = Hodges-Lehmann shift with the
                   distribution-free Moses CI (below). ``fisher_any``: proportion of subjects
                   with any event (mean_<arm> = proportion), Fisher's exact test, estimate =
                   conditional-MLE odds ratio with its exact CI (scipy ``odds_ratio``).
t2lv_change_ml     ``mann_whitney`` as above; ``ols``: difference in mean change with a t CI;
                   ``ols_adjusted``: the same plus covariates and T2-LV at the interval start
                   (ANCOVA; for intervals from baseline this is the baseline T2-LV).
relapse columns    one row set per configured column (interval ``0-<months>m``), one row per
                   participant: ``poisson`` (quasi-Poisson GLM, offset log(months);
                   ``poisson_exact`` under separation), ``poisson_adjusted`` (with the
                   covariates), ``negbin`` (NaN with a note when it cannot be fitted),
                   ``mann_whitney``.
=================  =========================================================================

Covariate types: each covariate is numeric unless declared categorical (config
``covariate_types``, else the dataset's participants.json: ``Levels`` categorical, ``Units``
numeric; the config wins, a disagreement is noted); relapse columns are non-negative integers. A
cell of the wrong kind is refused, not turned into a level (:mod:`pipeline.participants`).

Missing values, complete cases per model: every model uses the participants with each value it
needs present (the endpoint; for ``_adjusted`` models also every covariate, and T2-LV at the
interval start for ``ols_adjusted``). The unadjusted models need no covariate, so a missing
covariate never removes anyone from them. A covariate without any value in the cohort is not
adjusted for (as if absent); in one model's complete cases, a categorical covariate with one level
is dropped from that model like a constant term. An adjusted model left without any covariate
term, or with fewer than ``min_subjects_per_arm`` complete participants in an arm, is a NaN row
with the reason in the notes, not a crash.

Why a model fell back, which covariates were absent, how many participants each model left out
for missing values and which columns caused it: all go to a separate notes table (endpoint,
interval, model, note), never to extra columns.

Hodges-Lehmann CI (Hollander & Wolfe 1999, Nonparametric Statistical Methods, 2nd ed., sec. 4.3):
the closed interval between the k-th smallest and k-th largest of the n_a x n_b pairwise
differences, k from the null distribution of U (exact up to
StatsParams.hodges_lehmann_exact_max_pairs pairs, normal approximation above). For discrete data
(lesion counts, many ties) the closed interval is conservative (coverage >= nominal; Noether 1967),
and it can contain 0 while the tie-corrected U test rejects (typically [0, 0] or [0, 1] for
sparse counts): read the p-value, not the interval, for such rows.

References: Sormani et al. 1999, J Neurol Sci 163:74 (NB models of MRI lesion counts in MS
trials); Weinstock-Guttman et al. 2016, J Neurol Neurosurg Psychiatry (the discontinuation trial
whose endpoints these are).
"""

from __future__ import annotations

import argparse
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats as st
import statsmodels.api as sm
from scipy.stats.contingency import odds_ratio
from statsmodels.discrete.discrete_model import NegativeBinomial

from pipeline.contract import COUNT_ENDPOINTS, VOLUME_ENDPOINT
from pipeline.errors import InputError
from pipeline.cli import run_command
from pipeline.io import read_tsv, write_tsv
from pipeline.params import StatsParams
from pipeline.participants import (
    ColumnType,
    column_types,
    parse_covariate_types,
    read_sidecar,
    type_columns,
)

#: Columns of the notes table.
NOTE_COLUMNS: tuple[str, ...] = ("endpoint", "interval", "model", "note")


def stats_columns(arms: Sequence[str]) -> list[str]:
    """The exact column list of group_stats.tsv for ``arms`` (in order)."""
    per_arm = [c for arm in arms for c in (f"n_{arm}", f"mean_{arm}")]
    return ["endpoint", "interval", "model", *per_arm, "estimate", "ci_low", "ci_high", "p_value"]


@dataclass
class Fit:
    """One model's result: estimate with CI and p-value (NaN when not estimable) and notes."""

    model: str
    estimate: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_value: float = math.nan
    notes: list[str] = field(default_factory=list)


def _quiet(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
    """Call ``fn`` recording its warnings: a fit that warns (singular Hessian, overflow,
    non-convergence) is judged by the caller and reported as a note, not shown as a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    messages = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0]}"
                       for w in caught})
    return result, messages


# --------------------------------------------------------------------------- design matrices

def design_matrix(table: pd.DataFrame, arm_column: str, arms: Sequence[str],
                  covariates: Sequence[str] = (),
                  kinds: Mapping[str, str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Design matrix: intercept, first-arm indicator, covariates, over the complete cases.

    Parameters
    ----------
    table : rows to model, one per participant (each row's ``arm_column`` is one of ``arms``)
    arm_column, arms : the indicator ``arm`` is 1 for ``arms[0]``, 0 for ``arms[1]`` (reference)
    covariates : columns of ``table`` (present ones); numeric ones centred and scaled to unit SD,
        categorical ones treatment-coded (levels sorted as text, the first is the reference)
    kinds : covariate -> ``numeric`` | ``categorical``; a covariate not in it is numeric when its
        dtype is numeric or boolean, categorical otherwise

    Returns
    -------
    X : DataFrame indexed like the rows kept, columns ``const``, ``arm``, covariate terms. Rows
        with any covariate missing are left out (complete cases); a categorical covariate with one
        level in the rows kept, and constant or collinear terms, are dropped
    notes : what was left out or dropped and why (the number of participants left out and the
        columns that caused it)
    """
    notes: list[str] = []
    kinds = kinds or {}
    missing = pd.DataFrame({cov: table[cov].isna() for cov in covariates}, index=table.index)
    left_out = missing.any(axis=1)
    if left_out.any():
        causes = ", ".join(f"{cov} ({int(n)})" for cov, n in missing.sum().items() if n)
        notes.append(f"complete cases: {int(left_out.sum())} of {len(table)} participant(s) "
                     f"left out for n/a in {causes}")
    rows = table[~left_out]
    X = pd.DataFrame({"const": 1.0,
                      "arm": (rows[arm_column].astype(str) == str(arms[0])).astype(float)},
                     index=rows.index)
    for cov in covariates:
        col = rows[cov]
        numeric = pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col)
        if kinds.get(cov, "numeric" if numeric else "categorical") == "numeric":
            if not numeric:
                raise InputError(f"covariate {cov}: declared numeric but holds text; read the "
                                 "table with pipeline.participants.type_columns")
            # Centred and scaled: the arm coefficient is unchanged, but the optimiser sees
            # terms of unit size (washout_days spans 30-180) and converges.
            values = col.astype(float)
            sd = values.std()
            X[cov] = (values - values.mean()) / (sd if sd > 0 else 1.0)
        else:
            text = col.astype("string")
            levels = sorted(text.unique())
            if len(levels) == 1:
                notes.append(f"{cov}: one level ({levels[0]!r}) in the {len(rows)} "
                             "participant(s) modelled, not adjusted for")
            for level in levels[1:]:
                X[f"{cov}[{level}]"] = (text == level).astype(float)
    kept = ["const", "arm"]
    if len(X) == 0:
        return X[kept], notes
    for term in X.columns[2:]:
        values = X[term].to_numpy()
        if np.ptp(values) == 0:
            notes.append(f"{term}: constant in the rows modelled, dropped")
            continue
        if np.linalg.matrix_rank(X[kept + [term]].to_numpy()) <= len(kept):
            notes.append(f"{term}: collinear with the other terms, dropped")
            continue
        kept.append(term)
    return X[kept], notes


# --------------------------------------------------------------------------- rate models

def negbin_rate_ratio(counts: np.ndarray, X: pd.DataFrame, exposure_months: np.ndarray,
                      params: StatsParams, model: str = "negbin") -> tuple[Fit | None, str]:
    """NB2 regression of ``counts`` on ``X`` with offset log(``exposure_months``).

    Parameters
    ----------
    counts : (n,) non-negative integers
    X : (n, p) design with an ``arm`` column (see :func:`design_matrix`)
    exposure_months : (n,) follow-up per row, months (> 0)
    params : iterations and the minimum dispersion (StatsParams)
    model : model name of the returned Fit

    Returns
    -------
    (fit, reason): the rate ratio exp(beta_arm) with its Wald CI and p-value, or ``None`` and
    why NB cannot be used (non-convergence, alpha below ``negbin_min_alpha``, a warning such as
    a failed Hessian inversion, a non-finite arm coefficient).
    """
    offset = np.log(np.asarray(exposure_months, dtype=float))
    endog = np.asarray(counts, dtype=float)
    try:
        nb = NegativeBinomial(endog, X, loglike_method="nb2", offset=offset)
        res, warned = _quiet(nb.fit, method="bfgs", maxiter=params.max_iterations, disp=False)
    except (np.linalg.LinAlgError, ValueError, OverflowError) as exc:
        return None, f"fit failed ({type(exc).__name__}: {exc})"
    alpha = float(res.params["alpha"])
    if not res.mle_retvals.get("converged", False):
        return None, f"did not converge in {params.max_iterations} iterations"
    if not alpha >= params.negbin_min_alpha:
        return None, (f"dispersion alpha={alpha:.3g} < negbin_min_alpha="
                      f"{params.negbin_min_alpha:g} (no overdispersion)")
    if warned:
        return None, "; ".join(warned)
    return _wald_ratio(res, model, params.alpha)


def _wald_ratio(res: Any, model: str, alpha: float) -> tuple[Fit | None, str]:
    beta, se = float(res.params["arm"]), float(res.bse["arm"])
    if not (np.isfinite(beta) and np.isfinite(se) and se > 0):
        return None, f"arm coefficient not estimable (beta={beta:.3g}, se={se:.3g})"
    lo, hi = (float(v) for v in res.conf_int(alpha).loc["arm"])
    try:
        ratio, ratio_lo, ratio_hi = math.exp(beta), math.exp(lo), math.exp(hi)
    except OverflowError:
        # quasi-separation (e.g. no events in one arm within a covariate stratum): the
        # likelihood has no finite maximum and the Wald interval is meaningless
        return None, (f"arm coefficient not estimable (beta={beta:.3g}, {100 * (1 - alpha):g} % "
                      f"interval [{lo:.3g}, {hi:.3g}] on the log scale: quasi-separation)")
    return Fit(model, ratio, ratio_lo, ratio_hi, float(res.pvalues["arm"])), ""


def poisson_rate_ratio(counts: np.ndarray, X: pd.DataFrame, exposure_months: np.ndarray,
                       params: StatsParams, model: str = "poisson") -> Fit:
    """Quasi-Poisson GLM rate ratio of the first arm vs the second.

    Poisson GLM with offset log(``exposure_months``); standard errors scaled by
    max(1, Pearson X2 / df_resid) so overdispersion widens the CI and underdispersion never
    narrows it. Shapes as :func:`negbin_rate_ratio`. Returns a NaN Fit with a note when the arm
    coefficient is not estimable.
    """
    offset = np.log(np.asarray(exposure_months, dtype=float))
    glm = sm.GLM(np.asarray(counts, dtype=float), X, family=sm.families.Poisson(), offset=offset)
    try:
        res, warned = _quiet(glm.fit, maxiter=params.max_iterations)
        notes = list(warned)
        if res.df_resid > 0:
            dispersion = float(res.pearson_chi2 / res.df_resid)
            if dispersion > 1:
                res, warned2 = _quiet(glm.fit, maxiter=params.max_iterations, scale=dispersion)
                notes += warned2
                notes.append(f"quasi-Poisson: standard errors scaled by Pearson X2/df="
                             f"{dispersion:.3g}")
    except (np.linalg.LinAlgError, ValueError, OverflowError) as exc:
        return Fit(model, notes=[f"Poisson GLM failed ({type(exc).__name__}: {exc})"])
    fit, why = _wald_ratio(res, model, params.alpha)
    if fit is None or not res.converged:
        return Fit(model, notes=notes + [why or "Poisson GLM did not converge"])
    fit.notes = notes
    return fit


def exact_rate_ratio(count_a: int, exposure_a: float, count_b: int, exposure_b: float,
                     alpha: float, model: str = "poisson_exact") -> Fit:
    """Conditional exact comparison of two Poisson rates (first arm ``a`` vs reference ``b``).

    Given the total N = count_a + count_b, count_a ~ Binomial(N, p) with
    p = RR e_a / (RR e_a + e_b). p-value: exact binomial test of p = e_a / (e_a + e_b) (RR = 1);
    CI: Clopper-Pearson for p mapped to RR = p / (1 - p) * e_b / e_a. Defined under separation
    (one count zero), where the estimate is 0 or inf and one CI bound is 0 or inf.

    Parameters
    ----------
    count_a, count_b : total events per arm
    exposure_a, exposure_b : total follow-up per arm, subject-months
    alpha : 1 - confidence level
    """
    total = int(count_a + count_b)
    if total == 0:
        return Fit(model, notes=["no events in either arm"])
    test = st.binomtest(int(count_a), total, exposure_a / (exposure_a + exposure_b))
    ci = test.proportion_ci(confidence_level=1 - alpha, method="exact")

    def to_ratio(p: float) -> float:
        return math.inf if p >= 1 else p / (1 - p) * exposure_b / exposure_a

    rate_a, rate_b = count_a / exposure_a, count_b / exposure_b
    estimate = math.inf if rate_b == 0 else rate_a / rate_b
    return Fit(model, estimate, to_ratio(ci.low), to_ratio(ci.high), float(test.pvalue))


def rate_ratio(counts: np.ndarray, X: pd.DataFrame, exposure_months: np.ndarray,
               params: StatsParams, adjusted: bool = False) -> Fit:
    """Rate ratio of the first arm vs the second: NB, falling back as the module docstring says.

    Returns the Fit of the model actually used (``negbin``, ``poisson``, ``poisson_exact`` or
    their ``_adjusted`` variants), with the reason for any fallback in its notes.
    """
    suffix = "_adjusted" if adjusted else ""
    counts = np.asarray(counts, dtype=float)
    arm = X["arm"].to_numpy() == 1
    total_a, total_b = counts[arm].sum(), counts[~arm].sum()
    if total_a + total_b == 0:
        return Fit(f"negbin{suffix}", notes=["all counts are zero: no rate ratio"])
    if total_a == 0 or total_b == 0:
        why = (f"separation: {'first' if total_a == 0 else 'second'} arm has no event, "
               "the regression has no finite estimate")
        if adjusted:
            return Fit(f"negbin{suffix}", notes=[why + "; see the unadjusted poisson_exact row"])
        exposure = np.asarray(exposure_months, dtype=float)
        fit = exact_rate_ratio(int(total_a), float(exposure[arm].sum()), int(total_b),
                               float(exposure[~arm].sum()), params.alpha)
        fit.notes.insert(0, why + "; conditional exact Poisson test instead")
        return fit
    fit, why = negbin_rate_ratio(counts, X, exposure_months, params, f"negbin{suffix}")
    if fit is not None:
        return fit
    fallback = poisson_rate_ratio(counts, X, exposure_months, params, f"poisson{suffix}")
    fallback.notes.insert(0, f"negative binomial not used: {why}; Poisson GLM instead")
    return fallback


# --------------------------------------------------------------------------- rank and exact tests

def _mwu_null_counts(m: int, n: int) -> list[int]:
    """Number of arrangements giving each U = 0..m*n under H0 (continuous data).

    The generating function of U is the Gaussian binomial coefficient
    prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i) (Mann & Whitney 1947); exact integers.
    """
    m, n = min(m, n), max(m, n)
    size = m * n + 1
    coef = [0] * size
    coef[0] = 1
    for i in range(1, m + 1):
        shift = n + i
        for u in range(size - 1, shift - 1, -1):  # multiply by (1 - q^shift), in place
            coef[u] -= coef[u - shift]
        for u in range(i, size):  # divide by (1 - q^i): running sum with stride i
            coef[u] += coef[u - i]
    return coef


def hodges_lehmann(x_a: np.ndarray, x_b: np.ndarray, alpha: float,
                   exact_max_pairs: int = 2500) -> tuple[float, float, float]:
    """Hodges-Lehmann shift of ``x_a`` vs ``x_b`` with the distribution-free (Moses) CI.

    Parameters
    ----------
    x_a, x_b : (m,), (n,) samples of the first and second arm
    alpha : 1 - confidence level
    exact_max_pairs : exact null distribution of U when m * n <= this, normal approximation above

    Returns
    -------
    (estimate, ci_low, ci_high): median of the m*n differences x_a[i] - x_b[j] and the closed
    interval [D_(k), D_(mn+1-k)], k the largest integer with P(U <= k - 1) <= alpha / 2
    (infinite bounds when the samples are too small for that level).
    """
    x_a, x_b = np.asarray(x_a, dtype=float), np.asarray(x_b, dtype=float)
    m, n = len(x_a), len(x_b)
    diffs = np.sort((x_a[:, None] - x_b[None, :]).ravel())
    pairs = m * n
    estimate = float(np.median(diffs))
    if pairs <= exact_max_pairs:
        counts = _mwu_null_counts(m, n)
        total = math.comb(m + n, m)
        # k: number of lower-tail U values (0..k-1) whose probability stays within alpha/2.
        k, tail = 0, 0
        while k < pairs and 2 * (tail + counts[k]) <= alpha * total:
            tail += counts[k]
            k += 1
    else:
        z = st.norm.ppf(1 - alpha / 2)
        k = int(math.floor(pairs / 2 - z * math.sqrt(pairs * (m + n + 1) / 12)))
    if k < 1:
        return estimate, -math.inf, math.inf
    return estimate, float(diffs[k - 1]), float(diffs[pairs - k])


def mann_whitney(x_a: np.ndarray, x_b: np.ndarray, params: StatsParams) -> Fit:
    """Two-sided Mann-Whitney U test, estimate = Hodges-Lehmann shift (first - second arm)."""
    res = st.mannwhitneyu(x_a, x_b, alternative="two-sided", method="auto")
    est, lo, hi = hodges_lehmann(x_a, x_b, params.alpha, params.hodges_lehmann_exact_max_pairs)
    fit = Fit("mann_whitney", est, lo, hi, float(res.pvalue))
    if np.ptp(np.concatenate([x_a, x_b])) == 0:
        fit.notes.append("all values are equal: no difference to test")
    return fit


def fisher_any(counts_a: np.ndarray, counts_b: np.ndarray, alpha: float) -> Fit:
    """Fisher's exact test on the 2x2 table (any event yes/no) x (first arm, second arm).

    Estimate: conditional maximum-likelihood odds ratio (first vs second) with its exact CI
    (scipy.stats.contingency.odds_ratio, kind="conditional").
    """
    any_a, any_b = int((np.asarray(counts_a) > 0).sum()), int((np.asarray(counts_b) > 0).sum())
    table = [[any_a, len(counts_a) - any_a], [any_b, len(counts_b) - any_b]]
    p_value = float(st.fisher_exact(table).pvalue)
    res = odds_ratio(table, kind="conditional")
    ci = res.confidence_interval(confidence_level=1 - alpha)
    fit = Fit("fisher_any", float(res.statistic), float(ci.low), float(ci.high), p_value)
    if any_a + any_b == 0:
        fit.notes.append("no subject with any event: odds ratio undefined")
    return fit


# --------------------------------------------------------------------------- linear model

def ols_difference(values: np.ndarray, X: pd.DataFrame, alpha: float,
                   model: str = "ols") -> Fit:
    """OLS of ``values`` on ``X``: estimate = arm coefficient (first - second arm mean), t CI."""
    if len(values) - X.shape[1] < 1:
        return Fit(model, notes=[f"{len(values)} rows for {X.shape[1]} terms: no residual df"])
    res, warned = _quiet(sm.OLS(np.asarray(values, dtype=float), X).fit)
    lo, hi = (float(v) for v in res.conf_int(alpha).loc["arm"])
    return Fit(model, float(res.params["arm"]), lo, hi, float(res.pvalues["arm"]), list(warned))


# --------------------------------------------------------------------------- cohort comparison

def parse_sessions_months(items: Sequence[str]) -> dict[str, float]:
    """``["baseline=0", "m06=6"]`` -> ``{"baseline": 0.0, "m06": 6.0}``."""
    out = {}
    for item in items:
        label, sep, value = item.partition("=")
        try:
            out[label] = float(value)
        except ValueError:
            sep = ""
        if not sep or not label:
            raise InputError(f"{item!r}: expected LABEL=NUMBER (e.g. m06=6)")
    return out


class _Collector:
    """Accumulates stats rows and notes in a fixed order."""

    def __init__(self, arms: Sequence[str]) -> None:
        self.arms = list(arms)
        self.rows: list[dict[str, Any]] = []
        self.notes: list[dict[str, Any]] = []

    def note(self, endpoint: str, interval: Any, model: Any, text: str) -> None:
        self.notes.append({"endpoint": endpoint, "interval": interval, "model": model,
                           "note": text})

    def add(self, endpoint: str, interval: str, fit: Fit, values: Sequence[np.ndarray],
            means: Sequence[float] | None = None) -> None:
        row: dict[str, Any] = {"endpoint": endpoint, "interval": interval, "model": fit.model}
        for i, arm in enumerate(self.arms):
            row[f"n_{arm}"] = len(values[i])
            mean = means[i] if means is not None else \
                (float(np.mean(values[i])) if len(values[i]) else math.nan)
            row[f"mean_{arm}"] = mean
        row.update(estimate=fit.estimate, ci_low=fit.ci_low, ci_high=fit.ci_high,
                   p_value=fit.p_value)
        self.rows.append(row)
        for text in fit.notes:
            self.note(endpoint, interval, fit.model, text)


def _split(table: pd.DataFrame, column: str, arm_column: str,
           arms: Sequence[str]) -> list[np.ndarray]:
    return [table.loc[table[arm_column].astype(str) == str(arm), column].to_numpy(dtype=float)
            for arm in arms]


def _too_few(out: _Collector, endpoint: str, interval: str, models: Sequence[str],
             values: Sequence[np.ndarray], params: StatsParams) -> bool:
    small = [f"{arm} ({len(v)})" for arm, v in zip(out.arms, values)
             if len(v) < params.min_subjects_per_arm]
    if not small:
        return False
    why = (f"fewer than min_subjects_per_arm={params.min_subjects_per_arm} subjects in "
           f"{', '.join(small)}: not fitted")
    for model in models:
        # fisher_any reports proportions with any event, as when it is fitted
        means = [float(np.mean(v > 0)) if len(v) else math.nan for v in values] \
            if model == "fisher_any" else None
        out.add(endpoint, interval, Fit(model, notes=[why]), values, means)
    return True


@dataclass(frozen=True)
class _Adjustment:
    """The covariates of the ``_adjusted`` models, decided once per run."""

    configured: tuple[str, ...]  # as given; any: the count and relapse models get _adjusted rows
    usable: tuple[str, ...]  # configured minus those without any value (absent ones stay: noted)
    kinds: Mapping[str, str]  # covariate -> numeric | categorical
    notes: tuple[str, ...] = ()  # on every adjusted row (covariates without any value)


def _adjusted(out: _Collector, endpoint: str, interval: str, model: str, table: pd.DataFrame,
              response: str, arm_column: str, arms: Sequence[str], adjust: _Adjustment,
              fit_fn: Callable[[pd.DataFrame, pd.DataFrame], Fit], params: StatsParams,
              extra: Sequence[str] = ()) -> None:
    """One adjusted-model row: design with the covariates (and ``extra`` terms) over the complete
    cases, fit, notes (absent covariates, participants left out, dropped terms)."""
    covariates = list(adjust.usable) + list(extra)
    present = [c for c in covariates if c in table.columns]
    absent = [c for c in covariates if c not in table.columns]
    design_notes = list(adjust.notes) + (
        [f"covariate(s) {absent} absent from endpoints.tsv: not adjusted for"] if absent else [])
    if not present:
        out.add(endpoint, interval, Fit(model, notes=design_notes + [
            "no covariate with values present: adjusted model not fitted"]),
            _split(table, response, arm_column, arms))
        return
    X, more_notes = design_matrix(table, arm_column, arms, present, adjust.kinds)
    design_notes += more_notes
    used = table.loc[X.index]
    values = _split(used, response, arm_column, arms)
    small = [f"{arm} ({len(v)})" for arm, v in zip(arms, values)
             if len(v) < params.min_subjects_per_arm]
    if min(len(v) for v in values) == 0:
        fit = Fit(model, notes=["an arm has no complete row: not fitted"])
    elif small:
        fit = Fit(model, notes=[f"fewer than min_subjects_per_arm={params.min_subjects_per_arm} "
                                f"complete participants in {', '.join(small)}: not fitted"])
    elif len(X.columns) == 2:
        fit = Fit(model, notes=["no usable covariate term: adjusted model not fitted"])
    elif len(X) - X.shape[1] < params.min_residual_df:
        fit = Fit(model, notes=[f"{len(X)} rows for {X.shape[1]} terms: fewer than "
                                f"min_residual_df={params.min_residual_df} residual degrees of "
                                "freedom, not fitted"])
    else:
        fit = fit_fn(used, X)
    fit.notes = design_notes + fit.notes
    out.add(endpoint, interval, fit, values)


def compare_arms(endpoints: pd.DataFrame, arm_column: str, arms: Sequence[str],
                 sessions_months: Mapping[str, float], covariates: Sequence[str] = (),
                 relapse_columns: Mapping[str, float] | None = None,
                 params: StatsParams | None = None,
                 covariate_types: Mapping[str, str] | None = None,
                 sidecar: Mapping[str, Mapping[str, Any]] | None = None,
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All group comparisons of a cohort (see the module docstring for the models).

    Parameters
    ----------
    endpoints : the cohort table (endpoints.tsv: one row per participant x interval, endpoint
        columns plus participants columns)
    arm_column : treatment-arm column
    arms : exactly two labels; estimates are ``arms[0]`` relative to ``arms[1]``
    sessions_months : session label -> months since baseline (interval length = end - start;
        the exposure of rows without a ``months`` value, and the order of the intervals)
    covariates : participants columns for the ``_adjusted`` models (absent ones: a note)
    relapse_columns : relapse-count column -> months it covers (non-negative integers)
    params : thresholds (alpha, min_subjects_per_arm, ...)
    covariate_types : covariate -> ``numeric`` | ``categorical`` (config ``covariate_types``);
        undeclared covariates follow ``sidecar``, else are numeric, and a cell of the wrong kind
        is refused (:mod:`pipeline.participants`). None: types not declared, each covariate the
        sidecar does not declare is typed by its dtype as given (numeric dtype: numeric), as
        before the schema existed; a note says so
    sidecar : the dataset's participants.json (``Levels``: categorical, ``Units``: numeric)

    Returns
    -------
    stats : one row per endpoint x interval x model, columns :func:`stats_columns`
    notes : columns :data:`NOTE_COLUMNS`
    """
    params = params or StatsParams()
    arms = [str(a) for a in arms]
    if len(arms) != 2:
        raise InputError(f"--arms {arms}: give exactly two arm labels (first vs reference)")
    if arm_column not in endpoints.columns:
        raise InputError(f"endpoints.tsv: no arm column {arm_column!r}; run the cohort step with "
                         "the same --arm-column")
    out = _Collector(arms)
    table, adjust = _typed_cohort(out, endpoints, arm_column, covariates, covariate_types,
                                  relapse_columns or {}, sidecar)
    all_rows = len(table)
    table = table[table[arm_column].astype(str).isin(arms)].copy()
    if len(table) < all_rows:
        out.note(arm_column, math.nan, math.nan,
                 f"{all_rows - len(table)} row(s) with an arm not in {arms} left out")

    intervals = _interval_months(table, sessions_months) if len(table) else {}
    _note_model_inputs(out, table, adjust)
    for endpoint in COUNT_ENDPOINTS:
        if endpoint not in table.columns:
            out.note(endpoint, math.nan, math.nan, "column absent from endpoints.tsv: skipped")
            continue
        for interval, months in intervals.items():
            _count_endpoint(out, table[table["interval"] == interval], endpoint, interval,
                            months, arm_column, arms, adjust, params)
    if VOLUME_ENDPOINT not in table.columns:
        out.note(VOLUME_ENDPOINT, math.nan, math.nan, "column absent from endpoints.tsv: skipped")
    else:
        for interval in intervals:
            _volume_endpoint(out, table[table["interval"] == interval], interval, arm_column,
                             arms, adjust, params)
    for column, months in (relapse_columns or {}).items():
        _relapse_endpoint(out, table, column, float(months), arm_column, arms, adjust,
                          params)

    stats = pd.DataFrame(out.rows, columns=stats_columns(arms))
    notes = pd.DataFrame(out.notes, columns=list(NOTE_COLUMNS))
    return stats, notes


def _note_model_inputs(out: _Collector, table: pd.DataFrame, adjust: _Adjustment) -> None:
    """Notes, once per run, on what every model is given: where the count offsets come from and
    how each categorical covariate is coded."""
    if "months" in table.columns and len(table):
        real = pd.to_numeric(table["months"], errors="coerce")
        out.note("months", math.nan, math.nan,
                 f"count-model offsets use each row's months (real interval length; "
                 f"{int(real.isna().sum())} of {len(table)} row(s) without it use "
                 "--sessions-months)")
    for cov in adjust.usable:
        if cov in table.columns and adjust.kinds[cov] == "categorical":
            levels = sorted(table[cov].astype("string").dropna().unique())
            out.note(cov, math.nan, math.nan,
                     f"categorical covariate, treatment-coded: levels {levels}, reference "
                     f"{levels[0]!r}" if levels else "categorical covariate without values")


def _typed_cohort(out: _Collector, endpoints: pd.DataFrame, arm_column: str,
                  covariates: Sequence[str], covariate_types: Mapping[str, str] | None,
                  relapse_columns: Mapping[str, float],
                  sidecar: Mapping[str, Mapping[str, Any]] | None,
                  ) -> tuple[pd.DataFrame, _Adjustment]:
    """Covariate and relapse columns read by the participants schema, and the run's covariates.

    Notes (once per run): how undeclared types were decided, config and sidecar disagreeing,
    covariates without any value (then not adjusted for, as if absent).
    """
    types, schema_notes = column_types(arm_column, covariates, covariate_types or {},
                                       relapse_columns, sidecar)
    for column, text in schema_notes:
        out.note(column, math.nan, math.nan, text)
    inferred = []
    for cov in covariates:
        ctype = types[cov]
        if ctype.source == "participants.json":
            out.note(cov, math.nan, math.nan, f"read as {ctype.kind}: participants.json gives "
                     f"{'Levels' if ctype.kind == 'categorical' else 'Units'}")
        elif ctype.source == "default" and covariate_types is None and cov in endpoints.columns:
            col = endpoints[cov]
            numeric = pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col)
            types[cov] = ColumnType("numeric" if numeric else "categorical", "dtype")
            inferred.append(f"{cov} {types[cov].kind}")
    if inferred:
        out.note("covariate_types", math.nan, math.nan,
                 f"not declared: {', '.join(inferred)}, as the values were read; declare "
                 "covariate_types (--covariate-types) so that text in a numeric covariate is "
                 "refused")
    present = {c: t for c, t in types.items() if c != arm_column and c in endpoints.columns}
    table = type_columns(endpoints, present, "endpoints.tsv")
    for column, ctype in present.items():
        if ctype.kind == "count":  # float for the models; missing stays NaN
            table[column] = table[column].astype("float64")
    empty = [c for c in covariates if c in table.columns and table[c].isna().all()]
    for cov in empty:
        out.note(cov, math.nan, math.nan, "no value in endpoints.tsv (every cell blank or n/a): "
                                          "not adjusted for")
    notes = (f"covariate(s) {empty} without any value in endpoints.tsv: not adjusted for",) \
        if empty else ()
    adjust = _Adjustment(tuple(covariates), tuple(c for c in covariates if c not in empty),
                         {c: types[c].kind for c in covariates}, notes)
    return table, adjust


def _interval_months(table: pd.DataFrame, sessions_months: Mapping[str, float]) -> dict[str, float]:
    """Interval label -> length in months, ordered by end then latest start (baseline-m06,
    m06-m12, baseline-m12: consecutive intervals before the ones spanning them)."""
    found: dict[str, tuple[float, float]] = {}
    for interval, start, end in table[["interval", "ses_start", "ses_end"]].drop_duplicates() \
            .itertuples(index=False):
        for ses in (start, end):
            if ses not in sessions_months:
                raise InputError(f"endpoints.tsv: session {ses!r} (interval {interval}) has no "
                                 f"months in --sessions-months {dict(sessions_months)}; add "
                                 f"{ses}=<months>")
        a, b = float(sessions_months[start]), float(sessions_months[end])
        if b <= a:
            raise InputError(f"endpoints.tsv: interval {interval} has length {b - a:g} months "
                             "from --sessions-months; sessions must be in time order")
        if interval in found and found[interval] != (a, b):
            raise InputError(f"endpoints.tsv: interval {interval} has inconsistent sessions")
        found[interval] = (a, b)
    ordered = sorted(found, key=lambda k: (found[k][1], -found[k][0], k))
    return {k: found[k][1] - found[k][0] for k in ordered}


def _exposure_months(rows: pd.DataFrame, months: float) -> np.ndarray:
    """Each row's follow-up in months: its ``months`` column (the real interval length from the
    visit times) where given, else the interval's configured length ``months``."""
    if "months" not in rows.columns:
        return np.full(len(rows), months)
    real = pd.to_numeric(rows["months"], errors="coerce").to_numpy(dtype=float)
    bad = np.isfinite(real) & ~(real > 0)
    if bad.any():
        pid = rows["participant_id"].to_numpy()[bad][0]
        raise InputError(f"endpoints.tsv: {pid} has months {real[bad][0]:g} at interval "
                         f"{rows['interval'].iloc[0]}; an interval must last > 0 months (check "
                         "the visit times in the subject's sessions.tsv)")
    return np.where(np.isfinite(real), real, months)


def _count_endpoint(out: _Collector, rows: pd.DataFrame, endpoint: str, interval: str,
                    months: float, arm_column: str, arms: Sequence[str],
                    adjust: _Adjustment, params: StatsParams) -> None:
    missing = rows[endpoint].isna()
    if missing.any():
        out.note(endpoint, interval, math.nan, f"{int(missing.sum())} row(s) with n/a left out")
    rows = rows[~missing]
    values = _split(rows, endpoint, arm_column, arms)
    models = ["negbin"] + (["negbin_adjusted"] if adjust.configured else []) + \
        ["mann_whitney", "fisher_any"]
    if _too_few(out, endpoint, interval, models, values, params):
        return
    counts = rows[endpoint].to_numpy(dtype=float)
    if np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise InputError(f"endpoints.tsv: {endpoint} at {interval} holds values that are not "
                         "non-negative integers; re-run the longitudinal stage")
    exposure = _exposure_months(rows, months)
    X, _ = design_matrix(rows, arm_column, arms)
    out.add(endpoint, interval, rate_ratio(counts, X, exposure, params), values)
    if adjust.configured:
        _adjusted(out, endpoint, interval, "negbin_adjusted", rows, endpoint, arm_column, arms,
                  adjust,
                  lambda used, Xa: rate_ratio(used[endpoint].to_numpy(dtype=float), Xa,
                                              _exposure_months(used, months), params,
                                              adjusted=True), params)
    out.add(endpoint, interval, mann_whitney(values[0], values[1], params), values)
    out.add(endpoint, interval, fisher_any(values[0], values[1], params.alpha), values,
            means=[float(np.mean(v > 0)) for v in values])


def _volume_endpoint(out: _Collector, rows: pd.DataFrame, interval: str, arm_column: str,
                     arms: Sequence[str], adjust: _Adjustment, params: StatsParams) -> None:
    endpoint = VOLUME_ENDPOINT
    missing = rows[endpoint].isna()
    if missing.any():
        out.note(endpoint, interval, math.nan, f"{int(missing.sum())} row(s) with n/a left out")
    rows = rows[~missing]
    values = _split(rows, endpoint, arm_column, arms)
    if _too_few(out, endpoint, interval, ["mann_whitney", "ols", "ols_adjusted"], values, params):
        return
    out.add(endpoint, interval, mann_whitney(values[0], values[1], params), values)
    X, _ = design_matrix(rows, arm_column, arms)
    out.add(endpoint, interval, ols_difference(rows[endpoint].to_numpy(dtype=float), X,
                                               params.alpha), values)
    _adjusted(out, endpoint, interval, "ols_adjusted", rows, endpoint, arm_column, arms, adjust,
              lambda used, Xa: ols_difference(used[endpoint].to_numpy(dtype=float), Xa,
                                              params.alpha, "ols_adjusted"), params,
              extra=["t2lv_start_ml"])


def _relapse_endpoint(out: _Collector, table: pd.DataFrame, column: str, months: float,
                      arm_column: str, arms: Sequence[str], adjust: _Adjustment,
                      params: StatsParams) -> None:
    interval = f"0-{months:g}m"
    if column not in table.columns:
        out.note(column, interval, math.nan, "column absent from endpoints.tsv: skipped")
        return
    varying = table.groupby("participant_id")[column].nunique(dropna=False)
    if (varying > 1).any():
        raise InputError(f"endpoints.tsv: {column} differs between rows of "
                         f"{varying[varying > 1].index[0]}; it is a per-participant value")
    rows = table.drop_duplicates("participant_id").sort_values("participant_id")
    missing = rows[column].isna()
    if missing.any():
        out.note(column, interval, math.nan, f"{int(missing.sum())} participant(s) with n/a "
                                             "left out")
    rows = rows[~missing]
    values = _split(rows, column, arm_column, arms)
    models = ["poisson"] + (["poisson_adjusted"] if adjust.configured else []) + \
        ["negbin", "mann_whitney"]
    if _too_few(out, column, interval, models, values, params):
        return
    counts = rows[column].to_numpy(dtype=float)
    exposure = np.full(len(rows), months)
    X, _ = design_matrix(rows, arm_column, arms)
    total_a, total_b = (float(v.sum()) for v in values)
    degenerate = None
    if total_a + total_b == 0:
        degenerate = "all counts are zero: no rate ratio"
        out.add(column, interval, Fit("poisson", notes=[degenerate]), values)
    elif total_a == 0 or total_b == 0:
        degenerate = "separation: see the poisson_exact row"
        out.add(column, interval, rate_ratio(counts, X, exposure, params), values)
    else:
        out.add(column, interval, poisson_rate_ratio(counts, X, exposure, params), values)
    if adjust.configured:
        _adjusted(out, column, interval, "poisson_adjusted", rows, column, arm_column, arms,
                  adjust,
                  lambda used, Xa: Fit("poisson_adjusted", notes=[degenerate]) if degenerate
                  else poisson_rate_ratio(used[column].to_numpy(dtype=float), Xa,
                                          np.full(len(used), months), params,
                                          "poisson_adjusted"), params)
    if degenerate:
        out.add(column, interval, Fit("negbin", notes=[degenerate]), values)
    else:
        nb, why = negbin_rate_ratio(counts, X, exposure, params, "negbin")
        out.add(column, interval, nb or Fit("negbin", notes=[f"not fitted: {why}"]), values)
    out.add(column, interval, mann_whitney(values[0], values[1], params), values)


# --------------------------------------------------------------------------- files and CLI

def stats_files(endpoints_path: str | Path, out_path: str | Path, arm_column: str,
                arms: Sequence[str], sessions_months: Mapping[str, float],
                covariates: Sequence[str] = (), relapse_columns: Mapping[str, float] | None = None,
                notes_path: str | Path | None = None,
                params: StatsParams | None = None,
                covariate_types: Mapping[str, str] | None = None,
                sidecar_path: str | Path | None = None) -> tuple[Path, Path | None]:
    """Read endpoints.tsv, write group_stats.tsv (and the notes TSV when asked).

    ``covariate_types`` and ``sidecar_path`` (participants.json) as in :func:`compare_arms`:
    with declared types the covariate and relapse columns are read as written and typed by the
    participants schema; with ``covariate_types=None`` as pandas guesses them (as before).
    """
    dtype = {"participant_id": str, "interval": str, "ses_start": str, "ses_end": str,
             arm_column: str}
    if covariate_types is not None:
        dtype.update({c: str for c in [*covariates, *(relapse_columns or {})]})
    endpoints = read_tsv(endpoints_path, dtype=dtype)
    sidecar = read_sidecar(sidecar_path) if sidecar_path is not None else None
    stats, notes = compare_arms(endpoints, arm_column, arms, sessions_months, covariates,
                                relapse_columns, params, covariate_types, sidecar)
    write_tsv(out_path, stats)
    if notes_path is not None:
        write_tsv(notes_path, notes)
    return Path(out_path), (Path(notes_path) if notes_path is not None else None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline stats",
        description="Compare two arms on every endpoint and interval. Estimates are the FIRST "
                    "arm relative to the SECOND (ratios first/second, differences first-second).")
    ap.add_argument("--endpoints", required=True, type=Path, help="cohort endpoints.tsv")
    ap.add_argument("--arm-column", default="arm")
    ap.add_argument("--arms", nargs=2, required=True, metavar=("FIRST", "REFERENCE"))
    ap.add_argument("--sessions-months", nargs="+", required=True, metavar="SES=MONTHS",
                    help="e.g. baseline=0 m06=6 m12=12")
    ap.add_argument("--covariates", nargs="*", default=[], help="e.g. washout_days next_dmt")
    ap.add_argument("--covariate-types", nargs="*", default=None, metavar="COLUMN=TYPE",
                    help="numeric or categorical, e.g. washout_days=numeric next_dmt=categorical; "
                         "undeclared covariates follow --participants-json, else are numeric. "
                         "Without this option the types follow the values as read (a note says "
                         "so)")
    ap.add_argument("--participants-json", type=Path, default=None,
                    help="the dataset's participants.json (Levels: categorical, Units: numeric)")
    ap.add_argument("--relapse-columns", nargs="*", default=[], metavar="COLUMN=MONTHS",
                    help="e.g. relapses_0_3m=3 relapses_0_12m=12")
    ap.add_argument("--out", required=True, type=Path, help="group_stats.tsv")
    ap.add_argument("--notes", type=Path, default=None, help="notes TSV (fallbacks, skips)")
    ap.add_argument("--params", type=Path, default=None,
                    help="parameter JSON (python -m pipeline settings); uses StatsParams")
    args = ap.parse_args(argv)
    def work() -> None:
        params = None
        if args.params is not None:
            from pipeline.settings import load_params
            params = load_params(args.params)["StatsParams"]
        covariate_types = None if args.covariate_types is None else \
            parse_covariate_types(args.covariate_types)
        stats_files(args.endpoints, args.out, args.arm_column, args.arms,
                    parse_sessions_months(args.sessions_months), args.covariates,
                    parse_sessions_months(args.relapse_columns), args.notes, params,
                    covariate_types, args.participants_json)

    return run_command("stats", work)
