"""HTML report: self-contained, complete, well-formed, reproducible."""

from __future__ import annotations

import base64
import html
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import InputError
from pipeline.report import cohort_table, main, render_report
from pipeline.stats import compare_arms

ARMS = ["IDG", "TG"]
MONTHS = {"baseline": 0.0, "m06": 6.0, "m12": 12.0}
VOID = {"meta", "img", "br", "hr", "link", "input"}


def cohort(n: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(2 * n):
        arm = ARMS[i % 2]
        relapses = int(rng.poisson(1.0 if arm == "IDG" else 0.3))
        start = float(rng.uniform(2, 10))
        for a, b in (("baseline", "m06"), ("m06", "m12"), ("baseline", "m12")):
            change = float(rng.normal(0.5 if arm == "IDG" else 0.0, 0.3))
            rows.append(dict(
                participant_id=f"sub-{i + 1:03d}", interval=f"{a}-{b}", ses_start=a, ses_end=b,
                new_t2=int(rng.poisson(2 if arm == "IDG" else 0.5)),
                enlarging_t2=int(rng.poisson(0.5)), new_t1hypo=int(rng.poisson(0.4)),
                t2lv_start_ml=start, t2lv_end_ml=start + change, t2lv_change_ml=change,
                t2lv_change_pct=100 * change / start, arm=arm, washout_days=30 + 10 * i,
                next_dmt=("fingolimod", "interferon")[i % 3 == 0], relapses_0_3m=relapses,
                relapses_0_12m=relapses + 1))
    return pd.DataFrame(rows)


def tiny_png() -> bytes:
    # A valid 1x1 PNG (what qc.save_png writes, in miniature).
    return base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9Q"
                            "DwADhgGAWjR9awAAAABJRU5ErkJggg==")


class TagBalance(HTMLParser):
    """Checks every non-void tag is closed in order (a cheap well-formedness test)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def rendered():
    endpoints = cohort()
    stats, notes = compare_arms(endpoints, "arm", ARMS, MONTHS, ["washout_days", "next_dmt"],
                                {"relapses_0_3m": 3, "relapses_0_12m": 12})
    skipped = pd.DataFrame({"participant_id": ["sub-002", "sub-099"],
                            "interval": ["m06-m12", "baseline-m06"],
                            "status": ["skipped", "skipped"],
                            "reason": ["no ses-m12 folder", "FLAIR not found"]})
    figures = {"sub-001": [("sub-001_desc-registration_qc.png", tiny_png())]}
    config = {"arm": {"column": "arm", "labels": ARMS}, "note": "see https://example.org"}
    text = render_report(endpoints, stats, "arm", ARMS, notes, config, figures, skipped)
    return endpoints, stats, notes, text


def test_self_contained_and_well_formed(rendered):
    *_, text = rendered
    parser = TagBalance()
    parser.feed(text)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    external = [u for u in parser.urls if not (u.startswith("#") or u.startswith("data:"))]
    assert external == []
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text)
    assert text.count("data:image/png;base64,") >= 6  # 5 endpoint plots + a QC figure


def test_every_endpoint_row_and_stats_row_present(rendered):
    endpoints, stats, notes, text = rendered
    for pid, interval in endpoints[["participant_id", "interval"]].itertuples(index=False):
        assert pid in text and interval in text
    # Every participant x interval appears as a row of its subject table.
    assert text.count("<td class=\"l\">baseline-m06</td>") >= endpoints.participant_id.nunique()
    # Every group_stats row appears in the full table (endpoint, interval, model cells).
    for endpoint, interval, model in stats[["endpoint", "interval", "model"]].itertuples(
            index=False):
        cells = (f"<td class=\"l\">{endpoint}</td><td class=\"l\">{interval}</td>"
                 f"<td class=\"l\">{model}</td>")
        assert cells in text, cells
    for note in notes.note:
        assert html.escape(note) in text
    assert "no ses-m12 folder" in text and "sub-099" in text  # skipped, even without endpoints
    assert "sub-001_desc-registration_qc.png" in text
    assert "statsmodels" in text and "&quot;labels&quot;" in text


def test_cohort_table_shape_and_values(rendered):
    endpoints, stats, _, _ = rendered
    table, significant = cohort_table(endpoints, stats, "arm", ARMS)
    assert table["Endpoint"].tolist()[:2] == ["Relapses", "Relapses"]
    assert table["Interval"].tolist()[:2] == ["0-3m", "0-12m"]
    names = table["Endpoint"].drop_duplicates().tolist()
    assert names[1:] == ["New T2 lesions", "Enlarging T2 lesions", "T2-LV change (mL)",
                         "New T1-hypointense lesions"]
    assert len(table) == 2 + 4 * 3 and len(significant) == len(table)
    assert "estimate (95 % CI)" in table.columns and "adjusted (95 % CI)" in table.columns
    wider, _ = cohort_table(endpoints, stats, "arm", ARMS, alpha=0.1)
    assert "estimate (90 % CI)" in wider.columns
    row = table[(table.Endpoint == "New T2 lesions") & (table.Interval == "m06-m12")].iloc[0]
    x = endpoints[(endpoints.interval == "m06-m12") & (endpoints.arm == "IDG")].new_t2
    assert row["IDG n"] == "6" and row["IDG total"] == str(int(x.sum()))
    assert row["IDG mean (SD)"] == f"{x.mean():.2f} ({x.std(ddof=1):.2f})"
    rel = table.iloc[0]
    people = endpoints.drop_duplicates("participant_id")
    assert rel["TG total"] == str(int(people[people.arm == "TG"].relapses_0_3m.sum()))


def test_cli_reproducible_and_missing_figure(tmp_path, capsys):
    endpoints = cohort(n=4, seed=3)
    stats, notes = compare_arms(endpoints, "arm", ARMS, MONTHS)
    for name, table in (("endpoints", endpoints), ("stats", stats), ("notes", notes)):
        table.to_csv(tmp_path / f"{name}.tsv", sep="\t", index=False, na_rep="n/a")
    (tmp_path / "config.json").write_text(json.dumps({"out_dir": "results"}))
    fig = tmp_path / "sub-002" / "figures" / "sub-002_desc-lesion_qc.png"
    fig.parent.mkdir(parents=True)
    fig.write_bytes(tiny_png())
    args = ["--out", str(tmp_path), "--endpoints", str(tmp_path / "endpoints.tsv"),
            "--group-stats", str(tmp_path / "stats.tsv"), "--notes", str(tmp_path / "notes.tsv"),
            "--config-json", str(tmp_path / "config.json"), "--arm-column", "arm",
            "--arms", *ARMS]
    stale = tmp_path / "sub-009" / "figures" / "sub-009_desc-lesion_qc.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(tiny_png())  # left by an earlier run of another dataset
    assert main(args + ["--html", str(tmp_path / "a.html"), "--figures", str(fig)]) == 0
    assert main(args + ["--html", str(tmp_path / "b.html"), "--figures", str(fig)]) == 0
    a = (tmp_path / "a.html").read_bytes()
    assert a == (tmp_path / "b.html").read_bytes()
    assert b"sub-002_desc-lesion_qc.png" in a
    assert b"sub-009" not in a  # only the figures it is given, never what lies in OUT
    assert main(args + ["--html", str(tmp_path / "c.html"), "--figures",
                        str(tmp_path / "missing_qc.png")]) == 1
    assert "missing_qc.png: QC figure not found" in capsys.readouterr().err


def test_bad_config_json(tmp_path):
    from pipeline.report import report_files
    endpoints = cohort(n=2)
    stats, _ = compare_arms(endpoints, "arm", ARMS, MONTHS)
    endpoints.to_csv(tmp_path / "e.tsv", sep="\t", index=False)
    stats.to_csv(tmp_path / "s.tsv", sep="\t", index=False, na_rep="n/a")
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(InputError, match="c.json: not valid JSON"):
        report_files(tmp_path, tmp_path / "e.tsv", tmp_path / "s.tsv", tmp_path / "r.html",
                     "arm", ARMS, config_path=tmp_path / "c.json")


def test_compact_png_keeps_the_picture():
    from matplotlib.figure import Figure
    from PIL import Image

    from pipeline.report import compact_png, figure_png
    rng = np.random.default_rng(9)
    fig = Figure(figsize=(3, 3), dpi=50)
    fig.subplots().imshow(rng.normal(size=(40, 40)), cmap="gray")
    original = figure_png(fig)
    small = compact_png(original)
    assert len(small) <= len(original) and compact_png(original) == small
    import io
    with Image.open(io.BytesIO(small)) as a, Image.open(io.BytesIO(original)) as b:
        assert a.size == b.size
        diff = np.abs(np.asarray(a.convert("RGB"), float) - np.asarray(b.convert("RGB"), float))
        assert diff.mean() < 4  # of 255: a palette, not a different picture
