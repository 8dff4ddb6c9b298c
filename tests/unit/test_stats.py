"""Trial statistics: known effects recovered, fallbacks reported, exact column set."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
from scipy.stats.contingency import odds_ratio

from pipeline.errors import InputError
from pipeline.params import StatsParams
from pipeline.stats import (
    NOTE_COLUMNS,
    _mwu_null_counts,
    compare_arms,
    design_matrix,
    exact_rate_ratio,
    fisher_any,
    hodges_lehmann,
    main,
    rate_ratio,
    stats_columns,
)

ARMS = ["IDG", "TG"]
MONTHS = {"baseline": 0.0, "m06": 6.0, "m12": 12.0}
PARAMS = StatsParams()


def nb_counts(rng: np.random.Generator, mean: float, alpha: float, n: int) -> np.ndarray:
    """NB2 counts with the given mean and dispersion alpha (var = mean + alpha mean^2)."""
    r = 1.0 / alpha
    return rng.negative_binomial(r, r / (r + mean), size=n)


def arm_design(n_a: int, n_b: int) -> pd.DataFrame:
    table = pd.DataFrame({"arm": ["IDG"] * n_a + ["TG"] * n_b})
    X, _ = design_matrix(table, "arm", ARMS)
    return X


def cohort(rng: np.random.Generator, n: int = 25, rr: float = 3.0) -> pd.DataFrame:
    """An endpoints.tsv-like cohort: n per arm, three intervals, covariates and relapses."""
    rows = []
    dmts = ["interferon", "glatiramer", "fingolimod"]
    for i in range(2 * n):
        arm = ARMS[0] if i < n else ARMS[1]
        ratio = rr if arm == ARMS[0] else 1.0
        start = float(rng.uniform(2, 20))
        relapses = int(rng.poisson(0.8 * ratio / 3))
        per_subject = dict(arm=arm, washout_days=int(rng.integers(30, 181)), next_dmt=dmts[i % 3],
                           relapses_0_3m=relapses,
                           relapses_0_12m=relapses + int(rng.poisson(0.3)))
        for a, b in (("baseline", "m06"), ("m06", "m12"), ("baseline", "m12")):
            months = MONTHS[b] - MONTHS[a]
            change = float(rng.normal(0.5 if arm == ARMS[0] else 0.0, 0.5))
            rows.append(dict(
                participant_id=f"sub-{i:03d}", interval=f"{a}-{b}", ses_start=a, ses_end=b,
                new_t2=int(nb_counts(rng, 0.2 * months * ratio, 0.5, 1)[0]),
                enlarging_t2=int(rng.poisson(0.1 * months * ratio)),
                new_t1hypo=int(rng.poisson(0.05 * months * ratio)),
                t2lv_start_ml=start, t2lv_end_ml=start + change, t2lv_change_ml=change,
                t2lv_change_pct=100 * change / start, **per_subject))
    return pd.DataFrame(rows)


def test_negbin_recovers_known_rate_ratio():
    rng = np.random.default_rng(20160601)
    n, months, true_rr = 200, 6.0, 3.0
    counts = np.concatenate([nb_counts(rng, 0.3 * months * true_rr, 0.8, n),
                             nb_counts(rng, 0.3 * months, 0.8, n)])
    fit = rate_ratio(counts, arm_design(n, n), np.full(2 * n, months), PARAMS)
    assert fit.model == "negbin", fit.notes
    assert fit.ci_low < true_rr < fit.ci_high
    assert abs(math.log(fit.estimate / true_rr)) < 0.3
    assert fit.p_value < 0.05


def test_no_difference_is_not_significant():
    rng = np.random.default_rng(2)
    n, months = 200, 6.0
    counts = nb_counts(rng, 0.3 * months, 0.8, 2 * n)
    fit = rate_ratio(counts, arm_design(n, n), np.full(2 * n, months), PARAMS)
    assert fit.model == "negbin"
    assert fit.p_value > 0.05
    assert fit.ci_low < 1 < fit.ci_high


def test_poisson_fallback_without_overdispersion_is_noted():
    # Under-dispersed counts (variance < mean): the NB dispersion goes to 0, NB is not identified.
    counts = np.array([1, 2] * 15 + [0, 1] * 15, dtype=float)
    fit = rate_ratio(counts, arm_design(30, 30), np.full(60, 6.0), PARAMS)
    assert fit.model == "poisson"
    assert any("negative binomial not used" in n for n in fit.notes)
    # Poisson point estimate is the ratio of the arm means (saturated in arm).
    assert fit.estimate == pytest.approx(1.5 / 0.5, rel=1e-6)
    assert fit.ci_low < 3 < fit.ci_high and fit.p_value < 0.05


def test_separation_uses_exact_conditional_test():
    counts = np.array([2, 1, 0, 3, 1] + [0] * 5, dtype=float)
    fit = rate_ratio(counts, arm_design(5, 5), np.full(10, 12.0), PARAMS)
    assert fit.model == "poisson_exact"
    assert "separation" in fit.notes[0]
    assert fit.estimate == math.inf and fit.ci_high == math.inf and fit.ci_low > 0
    # Given 7 events and equal exposure, the first arm's count is Binomial(7, 1/2) under H0.
    assert fit.p_value == pytest.approx(st.binomtest(7, 7, 0.5).pvalue)


def test_exact_rate_ratio_ci_covers_observed_ratio():
    fit = exact_rate_ratio(20, 75.0, 7, 75.0, 0.05)
    assert fit.estimate == pytest.approx(20 / 7)
    assert fit.ci_low < 20 / 7 < fit.ci_high
    assert fit.p_value == pytest.approx(st.binomtest(20, 27, 0.5).pvalue)


def test_fisher_matches_scipy_on_hand_table():
    a = np.array([1, 0, 3, 2, 0, 1, 1, 0])  # 5 of 8 with any
    b = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0])  # 1 of 10
    fit = fisher_any(a, b, 0.05)
    table = [[5, 3], [1, 9]]
    assert fit.p_value == pytest.approx(st.fisher_exact(table).pvalue)
    ref = odds_ratio(table, kind="conditional")
    ci = ref.confidence_interval(0.95)
    assert (fit.estimate, fit.ci_low, fit.ci_high) == pytest.approx((ref.statistic, ci.low,
                                                                     ci.high))


def test_mwu_null_distribution_matches_scipy_exact():
    m, n = 6, 8
    counts = _mwu_null_counts(m, n)
    assert sum(counts) == math.comb(m + n, m)
    assert counts == counts[::-1]
    cdf = np.cumsum(counts) / math.comb(m + n, m)
    rng = np.random.default_rng(17)
    for _ in range(5):
        x, y = rng.normal(0.5, 1, m), rng.normal(0, 1, n)
        res = st.mannwhitneyu(x, y, method="exact", alternative="less")
        assert res.pvalue == pytest.approx(cdf[int(res.statistic)])
    # Tabulated critical value (m = n = 10, two-sided 0.05): reject when U <= 23.
    c10 = np.cumsum(_mwu_null_counts(10, 10)) / math.comb(20, 10)
    assert c10[23] <= 0.025 < c10[24]


def test_hodges_lehmann_shift_and_coverage():
    rng = np.random.default_rng(5)
    a, b = rng.normal(2.0, 1.0, 30), rng.normal(0.0, 1.0, 30)
    est, lo, hi = hodges_lehmann(a, b, 0.05)
    assert lo < 2.0 < hi and abs(est - 2.0) < 0.7
    # Normal approximation and exact agree closely at 30 x 30.
    est2, lo2, hi2 = hodges_lehmann(a, b, 0.05, exact_max_pairs=0)
    assert est2 == est and abs(lo2 - lo) < 0.1 and abs(hi2 - hi) < 0.1
    # Too small for a 95 % interval: infinite bounds, not a made-up one.
    assert hodges_lehmann(np.array([1.0]), np.array([0.0, 2.0]), 0.05)[1:] == (-math.inf,
                                                                             math.inf)


def test_cohort_columns_models_and_known_effect():
    rng = np.random.default_rng(99)
    table = cohort(rng, n=25, rr=3.0)
    stats, notes = compare_arms(table, "arm", ARMS, MONTHS, ["washout_days", "next_dmt"],
                                {"relapses_0_3m": 3, "relapses_0_12m": 12})
    assert list(stats.columns) == stats_columns(ARMS) == [
        "endpoint", "interval", "model", "n_IDG", "mean_IDG", "n_TG", "mean_TG", "estimate",
        "ci_low", "ci_high", "p_value"]
    assert list(notes.columns) == list(NOTE_COLUMNS)
    coding = notes[notes.endpoint == "next_dmt"].note.tolist()
    assert coding == ["categorical covariate, treatment-coded: levels ['fingolimod', 'glatiramer', "
                      "'interferon'], reference 'fingolimod'"]
    assert not stats.duplicated(["endpoint", "interval", "model"]).any()
    assert set(stats.endpoint) == {"new_t2", "enlarging_t2", "new_t1hypo", "t2lv_change_ml",
                                   "relapses_0_3m", "relapses_0_12m"}
    relapse = stats[stats.endpoint == "relapses_0_3m"]
    assert relapse.interval.unique().tolist() == ["0-3m"]
    assert relapse.model.tolist() == ["poisson", "poisson_adjusted", "negbin", "mann_whitney"]
    assert (relapse[["n_IDG", "n_TG"]] == 25).all().all()  # one row per participant
    t2 = stats[(stats.endpoint == "new_t2") & (stats.interval == "baseline-m12")]
    assert t2.model.str.replace("poisson", "negbin").tolist() == [
        "negbin", "negbin_adjusted", "mann_whitney", "fisher_any"]
    assert (t2[["n_IDG", "n_TG"]] == 25).all().all()
    count = t2.iloc[0]
    assert count.estimate > 1 and count.p_value < 0.05
    ols = stats[(stats.endpoint == "t2lv_change_ml") & (stats.model == "ols")]
    assert (ols.ci_low < 0.5).all() and (ols.ci_high > 0.5).all()
    vol = stats[(stats.endpoint == "t2lv_change_ml") & (stats.interval == "baseline-m06")]
    assert vol.model.tolist() == ["mann_whitney", "ols", "ols_adjusted"]
    means = table[table.interval == "baseline-m06"].groupby("arm")["t2lv_change_ml"].mean()
    assert vol.iloc[1].estimate == pytest.approx(means["IDG"] - means["TG"])


def test_real_interval_months_are_the_exposure():
    # The same counts over twice the follow-up in the first arm halve its rate: the offset
    # log(months) comes from each row's months column (real visit times) when present.
    table = cohort(np.random.default_rng(99), n=25, rr=3.0)
    nominal, _ = compare_arms(table, "arm", ARMS, MONTHS)
    longer = table.assign(months=np.where(table.arm == ARMS[0], 2.0, 1.0)
                          * (table.ses_end.map(MONTHS) - table.ses_start.map(MONTHS)))
    real, notes = compare_arms(longer, "arm", ARMS, MONTHS)

    def rr(stats):
        row = stats[(stats.endpoint == "new_t2") & (stats.interval == "baseline-m12")].iloc[0]
        return row.model, row.estimate

    assert rr(real)[0] == rr(nominal)[0]
    assert rr(real)[1] == pytest.approx(rr(nominal)[1] / 2, rel=1e-3)
    assert "each row's months" in notes[notes.endpoint == "months"].note.iloc[0]
    # A row without months (n/a) falls back to the configured interval length.
    partial = longer.assign(months=longer.months.where(longer.arm == ARMS[1]))
    assert rr(compare_arms(partial, "arm", ARMS, MONTHS)[0])[1] == pytest.approx(
        rr(nominal)[1], rel=1e-3)
    with pytest.raises(InputError, match="must last > 0 months"):
        compare_arms(longer.assign(months=0.0), "arm", ARMS, MONTHS)


def test_all_zero_counts_give_nan_with_note():
    rng = np.random.default_rng(2)
    table = cohort(rng, n=6)
    table["new_t1hypo"] = 0
    stats, notes = compare_arms(table, "arm", ARMS, MONTHS)
    rows = stats[(stats.endpoint == "new_t1hypo") & (stats.model == "negbin")]
    assert len(rows) == 3 and rows.estimate.isna().all() and rows.p_value.isna().all()
    zero = notes[(notes.endpoint == "new_t1hypo") & (notes.model == "negbin")]
    assert len(zero) == 3 and zero.note.str.contains("all counts are zero").all()


def test_missing_covariate_and_endpoint_columns_are_noted():
    rng = np.random.default_rng(3)
    table = cohort(rng, n=10).drop(columns=["next_dmt", "enlarging_t2"])
    stats, notes = compare_arms(table, "arm", ARMS, MONTHS, ["washout_days", "next_dmt"])
    assert "enlarging_t2" not in set(stats.endpoint)
    assert notes[notes.endpoint == "enlarging_t2"].note.str.contains("absent").any()
    absent = notes[notes.note.str.contains(r"\['next_dmt'\] absent", regex=True)]
    assert len(absent) > 0 and absent.model.str.endswith("_adjusted").all()
    # Still adjusted for the covariate that is present.
    adjusted = stats[stats.model.str.endswith("_adjusted")]
    assert adjusted.estimate.notna().any()


def test_too_few_subjects_per_arm():
    rng = np.random.default_rng(4)
    table = cohort(rng, n=4)
    table = table[(table.arm == "IDG") | (table.participant_id == "sub-004")]
    stats, notes = compare_arms(table, "arm", ARMS, MONTHS, params=StatsParams(
        min_subjects_per_arm=2))
    assert stats.estimate.isna().all() and (stats.n_TG == 1).all()
    fisher = stats[(stats.model == "fisher_any") & (stats.interval == "baseline-m12")].iloc[0]
    idg = table[(table.arm == "IDG") & (table.interval == "baseline-m12")].new_t2
    assert fisher.mean_IDG == pytest.approx((idg > 0).mean())
    assert notes.note.str.contains("fewer than min_subjects_per_arm").any()


def test_unknown_session_months_refused():
    rng = np.random.default_rng(6)
    with pytest.raises(InputError, match="'m12'.*--sessions-months"):
        compare_arms(cohort(rng, n=3), "arm", ARMS, {"baseline": 0, "m06": 6})


def test_cli_deterministic(tmp_path):
    rng = np.random.default_rng(8)
    path = tmp_path / "endpoints.tsv"
    cohort(rng, n=12).to_csv(path, sep="\t", index=False)
    args = ["--endpoints", str(path), "--arm-column", "arm", "--arms", "IDG", "TG",
            "--sessions-months", "baseline=0", "m06=6", "m12=12",
            "--covariates", "washout_days", "next_dmt",
            "--relapse-columns", "relapses_0_3m=3", "relapses_0_12m=12"]
    assert main(args + ["--out", str(tmp_path / "a.tsv"), "--notes", str(tmp_path / "na.tsv")]) == 0
    assert main(args + ["--out", str(tmp_path / "b.tsv"), "--notes", str(tmp_path / "nb.tsv")]) == 0
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()
    assert (tmp_path / "na.tsv").read_bytes() == (tmp_path / "nb.tsv").read_bytes()
    header = (tmp_path / "a.tsv").read_text().splitlines()[0].split("\t")
    assert header == stats_columns(ARMS)


def test_saturated_adjusted_model_not_fitted():
    # 3 per arm, 3 next_dmt levels + washout: 5 terms for 6 rows -> 1 residual df < 3.
    rng = np.random.default_rng(12)
    stats, notes = compare_arms(cohort(rng, n=3), "arm", ARMS, MONTHS,
                                ["washout_days", "next_dmt"], {"relapses_0_12m": 12})
    adjusted = stats[stats.model.str.endswith("_adjusted")]
    assert len(adjusted) and adjusted.estimate.isna().all() and adjusted.p_value.isna().all()
    assert notes.note.str.contains("min_residual_df=3").any()
    assert stats[stats.model == "ols"].estimate.notna().all()


def test_quasi_separation_in_an_adjusted_model_is_a_note_not_a_crash():
    """Each next therapy occurs in one arm only and one therapy has all the events: the adjusted
    Poisson likelihood has no finite maximum (its Wald interval overflows exp)."""
    from pipeline.stats import compare_arms

    ep = pd.DataFrame({
        "participant_id": [f"sub-{i:03d}" for i in range(1, 9)],
        "interval": "baseline-m06", "ses_start": "baseline", "ses_end": "m06",
        "new_t2": [4, 3, 0, 0, 0, 1, 2, 0], "enlarging_t2": 0, "new_t1hypo": 0,
        "t2lv_start_ml": 1.0, "t2lv_end_ml": 1.0, "t2lv_change_ml": 0.0, "t2lv_change_pct": 0.0,
        "arm": ["IDG", "TG", "TG", "IDG", "IDG", "IDG", "TG", "TG"],
        "washout_days": [128, 127, 40, 35, 68, 176, 150, 36],
        "next_dmt": ["glatiramer", "teriflunomide", "teriflunomide", "teriflunomide",
                     "teriflunomide", "teriflunomide", "fingolimod", "teriflunomide"],
    })
    table, notes = compare_arms(ep, "arm", ["IDG", "TG"], {"baseline": 0, "m06": 6},
                                ["washout_days", "next_dmt"], {})
    adjusted = table[(table.endpoint == "new_t2") & table.model.str.endswith("_adjusted")]
    assert len(adjusted) == 1 and np.isnan(adjusted.estimate.iloc[0])
    why = notes[(notes.endpoint == "new_t2") & (notes.model == adjusted.model.iloc[0])].note
    assert why.str.contains("quasi-separation").any()
    unadjusted = table[(table.endpoint == "new_t2") & (table.model == "negbin")]
    assert unadjusted.estimate.iloc[0] == pytest.approx(1.0)


# --------------------------------------------------------------------------- typed covariates

COVARIATES = ["washout_days", "next_dmt"]
TYPES = {"washout_days": "numeric", "next_dmt": "categorical"}
RELAPSES = {"relapses_0_3m": 3}


def adjusted_notes(notes: pd.DataFrame, endpoint: str, interval: str) -> list[str]:
    rows = notes[(notes.endpoint == endpoint) & (notes.interval == interval)
                 & notes.model.astype(str).str.endswith("_adjusted")]
    return rows.note.tolist()


def test_blank_covariate_cells_are_missing_and_left_out_of_the_adjusted_models_only():
    table = cohort(np.random.default_rng(21), n=12)
    table["washout_days"] = table["washout_days"].astype(str)  # as read from a file: text
    table.loc[table.participant_id.isin(["sub-001", "sub-013"]), "washout_days"] = ""
    table.loc[table.participant_id == "sub-002", "washout_days"] = "n/a"
    stats, notes = compare_arms(table, "arm", ARMS, MONTHS, COVARIATES, RELAPSES,
                                covariate_types=TYPES)
    left_out = "complete cases: 3 of 24 participant(s) left out for n/a in washout_days (3)"
    for endpoint, interval in (("new_t2", "baseline-m12"), ("t2lv_change_ml", "m06-m12"),
                               ("relapses_0_3m", "0-3m")):
        assert left_out in adjusted_notes(notes, endpoint, interval)
        rows = stats[(stats.endpoint == endpoint) & (stats.interval == interval)]
        adjusted = rows[rows.model.str.endswith("_adjusted")].iloc[0]
        assert (adjusted.n_IDG, adjusted.n_TG) == (10, 11) and np.isfinite(adjusted.estimate)
        # The unadjusted models keep every participant.
        assert (rows[~rows.model.str.endswith("_adjusted")][["n_IDG", "n_TG"]] == 12).all().all()
    # washout_days stayed a numeric covariate: one term, not a dummy per value.
    assert not notes.note.str.contains(r"washout_days\[", regex=True).any()
    assert not (notes.endpoint == "washout_days").any()


def test_text_in_a_numeric_covariate_or_a_fractional_relapse_count_is_refused():
    table = cohort(np.random.default_rng(22), n=4).astype({"washout_days": str})
    table.loc[table.participant_id == "sub-005", "washout_days"] = "about ten weeks"
    with pytest.raises(InputError, match=r"endpoints\.tsv: sub-005 has washout_days='about ten "
                                         r"weeks', not a number; write the number of days or n/a"):
        compare_arms(table, "arm", ARMS, MONTHS, COVARIATES, covariate_types=TYPES)
    table = cohort(np.random.default_rng(22), n=4).astype({"relapses_0_3m": float})
    table.loc[table.participant_id == "sub-002", "relapses_0_3m"] = 1.5
    with pytest.raises(InputError, match=r"sub-002 has relapses_0_3m='1.5', not a count"):
        compare_arms(table, "arm", ARMS, MONTHS, COVARIATES, RELAPSES, covariate_types=TYPES)


def test_a_covariate_without_any_value_gives_notes_not_a_crash():
    table = cohort(np.random.default_rng(23), n=10).assign(washout_days="n/a")
    stats, notes = compare_arms(table, "arm", ARMS, MONTHS, COVARIATES, RELAPSES,
                                covariate_types=TYPES)
    assert "not adjusted for" in notes[notes.endpoint == "washout_days"].note.iloc[0]
    # Still adjusted for next_dmt, with a note on every adjusted row.
    adjusted = stats[stats.model.str.endswith("_adjusted")]
    assert adjusted.estimate.notna().any()
    assert ("covariate(s) ['washout_days'] without any value in endpoints.tsv: not adjusted for"
            in adjusted_notes(notes, "new_t2", "baseline-m06"))
    # The only covariate: every adjusted count model is a NaN row with the reason (ols_adjusted
    # still has T2-LV at the interval start).
    stats, notes = compare_arms(table, "arm", ARMS, MONTHS, ["washout_days"], RELAPSES,
                                covariate_types=TYPES)
    adjusted = stats[stats.model.str.endswith("_adjusted")]
    counts = adjusted[adjusted.endpoint != "t2lv_change_ml"]
    assert len(counts) == 3 * 3 + 1 and counts.estimate.isna().all()
    assert adjusted[adjusted.endpoint == "t2lv_change_ml"].estimate.notna().all()
    assert ("no covariate with values present: adjusted model not fitted"
            in adjusted_notes(notes, "relapses_0_3m", "0-3m"))
    # The unadjusted models are those of a run without covariates.
    plain, _ = compare_arms(table, "arm", ARMS, MONTHS, [], RELAPSES)

    def unadjusted(frame):
        return frame[~frame.model.str.endswith("_adjusted")].reset_index(drop=True)

    pd.testing.assert_frame_equal(unadjusted(stats), unadjusted(plain))


def test_one_categorical_level_left_after_complete_cases_is_a_note_not_a_fit():
    table = cohort(np.random.default_rng(24), n=20)
    table["washout_days"] = table["washout_days"].where(table.next_dmt == "fingolimod")
    stats, notes = compare_arms(table, "arm", ARMS, MONTHS, COVARIATES, RELAPSES,
                                covariate_types=TYPES)
    why = adjusted_notes(notes, "t2lv_change_ml", "baseline-m06")
    n_kept = int((table[table.interval == "baseline-m06"].next_dmt == "fingolimod").sum())
    assert why[:2] == [
        f"complete cases: {40 - n_kept} of 40 participant(s) left out for n/a in washout_days "
        f"({40 - n_kept})",
        f"next_dmt: one level ('fingolimod') in the {n_kept} participant(s) modelled, not "
        "adjusted for"]
    adjusted = stats[(stats.endpoint == "t2lv_change_ml") & (stats.model == "ols_adjusted")]
    assert len(adjusted) == 3 and adjusted.estimate.notna().all()  # washout, baseline T2-LV
    # With next_dmt the only covariate, no term is left: not fitted.
    one = table.assign(next_dmt=table.next_dmt.where(table.next_dmt == "fingolimod", "n/a"))
    stats, notes = compare_arms(one, "arm", ARMS, MONTHS, ["next_dmt"], RELAPSES,
                                covariate_types=TYPES)
    adjusted = stats[stats.model.str.endswith("_adjusted") & (stats.endpoint != "t2lv_change_ml")]
    assert len(adjusted) == 3 * 3 + 1 and adjusted.estimate.isna().all()
    assert "no usable covariate term: adjusted model not fitted" in adjusted_notes(
        notes, "relapses_0_3m", "0-3m")


def test_sidecar_types_an_undeclared_covariate_and_the_config_wins_a_conflict():
    table = cohort(np.random.default_rng(25), n=10)
    table["next_dmt"] = table["next_dmt"].map({"interferon": "1", "glatiramer": "2",
                                               "fingolimod": "3"})
    sidecar = {"next_dmt": {"Levels": {"1": "interferon", "2": "glatiramer", "3": "fingolimod"}},
               "washout_days": {"Levels": {"30": "one month"}}}
    _, notes = compare_arms(table, "arm", ARMS, MONTHS, COVARIATES, covariate_types={
        "washout_days": "numeric"}, sidecar=sidecar)
    by_column = notes[notes.interval.isna()].groupby("endpoint").note.apply(list)
    assert by_column["next_dmt"] == [
        "read as categorical: participants.json gives Levels",
        "categorical covariate, treatment-coded: levels ['1', '2', '3'], reference '1'"]
    assert by_column["washout_days"] == [
        "config covariate_types says numeric, participants.json says categorical (it gives "
        "Levels): read as numeric, the config wins"]
    # Without either declaration next_dmt "1"/"2"/"3" would be numeric: no coding note.
    _, plain = compare_arms(table, "arm", ARMS, MONTHS, COVARIATES, covariate_types={})
    assert not (plain.endpoint == "next_dmt").any()


def test_cli_types_endpoints_by_the_declared_types(tmp_path, capsys):
    table = cohort(np.random.default_rng(26), n=8)
    table["next_dmt"] = table["next_dmt"].map({"interferon": "1", "glatiramer": "2",
                                               "fingolimod": "3"})
    table["washout_days"] = table["washout_days"].astype(str)
    table.loc[table.participant_id == "sub-001", "washout_days"] = ""
    path = tmp_path / "endpoints.tsv"
    table.to_csv(path, sep="\t", index=False)
    base = ["--endpoints", str(path), "--arms", "IDG", "TG", "--sessions-months", "baseline=0",
            "m06=6", "m12=12", "--covariates", *COVARIATES, "--relapse-columns",
            "relapses_0_3m=3", "--notes", str(tmp_path / "notes.tsv"), "--out",
            str(tmp_path / "stats.tsv")]
    assert main(base + ["--covariate-types", "washout_days=numeric",
                        "next_dmt=categorical"]) == 0
    notes = pd.read_csv(tmp_path / "notes.tsv", sep="\t")
    assert notes.note.str.contains("left out for n/a in washout_days (1)", regex=False).any()
    assert notes.note.str.contains("levels ['1', '2', '3']", regex=False).any()
    # Without --covariate-types (the earlier invocation) it still runs, and says how it typed.
    assert main(base) == 0
    notes = pd.read_csv(tmp_path / "notes.tsv", sep="\t")
    assert notes[notes.endpoint == "covariate_types"].note.str.startswith("not declared").all()
    assert main(base + ["--covariate-types", "next_dmt=ordinal"]) == 1
    assert "COLUMN=TYPE" in capsys.readouterr().err
