"""The self-contained HTML report of a cohort run.

One file, no external resource (no URL, no CDN, no font or script download): CSS is inline and
every image is embedded as a base64 ``data:`` URI, so the report can be mailed or archived and
still shows everything. Sections:

1. Cohort results by arm, in the shape of the 2016 study's results table: relapses, new T2,
   enlarging T2, T2-LV change and new T1-hypointense lesions per interval; per arm n,
   mean (SD) and total; the primary model's estimate (95 % CI) and p, the covariate-adjusted
   estimate, the rank-test p-value. Estimates compare the first arm with the second (see
   :mod:`pipeline.stats`).
2. Plots of every endpoint by arm and interval (box plots with every subject as a point).
3. Per subject: QC figures (from :mod:`pipeline.qc`), endpoints, skipped intervals and why.
4. Notes from the statistics (fallbacks, skipped covariates, dropped rows).
5. Parameters used (the configuration JSON) and software versions.

Nothing time-dependent is written: the same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from pipeline.contract import COUNT_ENDPOINTS, ENDPOINT_COLUMNS, VOLUME_ENDPOINT
from pipeline.errors import InputError
from pipeline.cli import run_command
from pipeline.io import atomic_path, read_tsv
from pipeline.params import StatsParams
from pipeline.provenance import software_versions

#: Display names of the endpoints (rows of the cohort table), in the table's order.
ENDPOINT_NAMES: dict[str, str] = {
    "new_t2": "New T2 lesions",
    "enlarging_t2": "Enlarging T2 lesions",
    VOLUME_ENDPOINT: "T2-LV change (mL)",
    "new_t1hypo": "New T1-hypointense lesions",
}
#: Primary and adjusted model per endpoint kind, in order of preference (fallbacks after).
PRIMARY_MODELS = {"count": ("negbin", "poisson", "poisson_exact"), "volume": ("ols",),
                  "relapse": ("poisson", "poisson_exact")}
ADJUSTED_MODELS = {"count": ("negbin_adjusted", "poisson_adjusted"), "volume": ("ols_adjusted",),
                   "relapse": ("poisson_adjusted",)}
#: Packages whose versions the report lists.
CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;
max-width:1320px;color:#1d232a;line-height:1.4;padding:0 16px}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #d0d7de;padding-bottom:4px;
margin-top:1.8em}h3{margin-bottom:.3em}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.86em}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f3f5f7}td.l,th.l{text-align:left}
tr.sig td.p{font-weight:600;color:#a40e26}
tbody tr:nth-child(even){background:#fafbfc}
.note{color:#57606a;font-size:.9em}
figure{margin:8px 0 18px}figure img{max-width:100%;border:1px solid #d0d7de}
figcaption{color:#57606a;font-size:.85em}
pre{background:#f6f8fa;border:1px solid #d0d7de;padding:10px;font-size:.82em;overflow:auto}
details{margin:6px 0;border:1px solid #d0d7de;border-radius:4px;padding:4px 10px}
summary{cursor:pointer;font-weight:600}
nav a{margin-right:14px}
.banner{background:#fff8c5;border:1px solid #d4a72c;border-radius:4px;padding:8px 12px;
margin:10px 0}.banner td{white-space:normal;text-align:left}
"""


# --------------------------------------------------------------------------- formatting

def _num(value: Any, digits: int = 2) -> str:
    """A number for a table cell: NaN -> em dash, inf -> infinity sign, fixed decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return "\u2014"
    value = float(value)
    if math.isinf(value):
        return "\u221e" if value > 0 else "\u2212\u221e"
    return f"{value:.{digits}f}"


def _p(value: Any) -> str:
    if value is None or pd.isna(value):
        return "\u2014"
    return "<0.001" if float(value) < 0.001 else f"{float(value):.3f}"


def _estimate(row: pd.Series | None) -> str:
    if row is None or pd.isna(row["estimate"]):
        return "\u2014"
    return f"{_num(row['estimate'])} ({_num(row['ci_low'])}\u2013{_num(row['ci_high'])})"


def _table(frame: pd.DataFrame, left: Sequence[str] = (), row_class: Sequence[str] | None = None,
           p_columns: Sequence[str] = ()) -> str:
    """HTML table of already formatted strings (escaped here)."""
    def cls(column: str) -> str:
        if column in left:
            return ' class="l"'
        return ' class="p"' if column in p_columns else ""

    head = "".join(f"<th{cls(c) if c in left else ''}>{html.escape(str(c))}</th>"
                   for c in frame.columns)
    body = []
    for i, (_, row) in enumerate(frame.iterrows()):
        tr = f' class="{row_class[i]}"' if row_class and row_class[i] else ""
        cells = "".join(f"<td{cls(c)}>{html.escape(str(v))}</td>" for c, v in row.items())
        body.append(f"<tr{tr}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Format a raw table for display: floats with 4 significant digits, NaN as n/a."""
    out = frame.copy().astype(object)
    for column in frame.columns:
        if pd.api.types.is_float_dtype(frame[column]):
            out[column] = [("n/a" if pd.isna(v) else f"{v:.4g}") for v in frame[column]]
        else:
            out[column] = ["n/a" if pd.isna(v) else str(v) for v in frame[column]]
    return out


def png_data_uri(data: bytes) -> str:
    """``data:image/png;base64,...`` for embedding a PNG in the HTML."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def compact_png(data: bytes) -> bytes:
    """The PNG re-encoded with a 256-colour palette when that is smaller (else unchanged).

    QC figures are grey slices with a few overlay colours, which a median-cut palette keeps
    visually intact at about half the bytes; a 50-subject report stays tens, not hundreds, of
    MB. The full-colour PNGs remain in ``sub-*/figures``. Deterministic (no time stamps).
    """
    with Image.open(io.BytesIO(data)) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue() if buffer.tell() < len(data) else data


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib figure, without software/time metadata."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


# --------------------------------------------------------------------------- cohort table

def _kind(endpoint: str) -> str:
    if endpoint in COUNT_ENDPOINTS:
        return "count"
    return "volume" if endpoint == VOLUME_ENDPOINT else "relapse"


def _display_name(endpoint: str) -> str:
    if endpoint in ENDPOINT_NAMES:
        return ENDPOINT_NAMES[endpoint]
    return "Relapses" if endpoint.startswith("relapse") else endpoint


def _pick(rows: pd.DataFrame, models: Sequence[str]) -> pd.Series | None:
    for model in models:
        hit = rows[rows["model"] == model]
        if len(hit):
            return hit.iloc[0]
    return None


def cohort_table(endpoints: pd.DataFrame, stats: pd.DataFrame, arm_column: str,
                 arms: Sequence[str], alpha: float = 0.05) -> tuple[pd.DataFrame, list[bool]]:
    """The results table by arm, one row per endpoint x interval (formatted strings).

    Parameters
    ----------
    endpoints : cohort endpoints.tsv (one row per participant x interval)
    stats : group_stats.tsv
    arm_column, arms : arm column and labels (first vs reference)
    alpha : the CI level of group_stats.tsv (StatsParams.alpha), for the column names

    Returns
    -------
    table : columns Endpoint, Interval, per arm ``n``, ``mean (SD)``, ``total``, then
        ``estimate (95 % CI)``, ``model``, ``p``, ``adjusted (95 % CI)``, ``p adj.``,
        ``p rank``; rows: relapse columns, then new T2, enlarging T2, T2-LV change and new
        T1-hypointense per interval (intervals in group_stats order)
    significant : per row, whether the primary p-value is below ``alpha``
    """
    ci = f"{100 * (1 - alpha):g} % CI"
    order = [e for e in stats["endpoint"].drop_duplicates() if _kind(e) == "relapse"]
    order += [e for e in ENDPOINT_NAMES if e in set(stats["endpoint"])]
    rows, significant = [], []
    for endpoint in order:
        kind = _kind(endpoint)
        for interval in stats.loc[stats.endpoint == endpoint, "interval"].drop_duplicates():
            sub = stats[(stats.endpoint == endpoint) & (stats.interval == interval)]
            if kind == "relapse":  # one value per participant, repeated on each interval row
                values = endpoints.drop_duplicates("participant_id") \
                    if endpoint in endpoints.columns else None
            else:
                values = endpoints[endpoints["interval"] == interval]
            row: dict[str, str] = {
                "Endpoint": _display_name(endpoint),
                "Interval": str(interval)}
            for arm in arms:
                x = (values.loc[values[arm_column].astype(str) == arm, endpoint].dropna()
                     .to_numpy(dtype=float) if values is not None and endpoint in values
                     else np.array([]))
                row[f"{arm} n"] = str(len(x))
                sd = float(np.std(x, ddof=1)) if len(x) > 1 else math.nan
                row[f"{arm} mean (SD)"] = f"{_num(x.mean() if len(x) else math.nan)} " \
                                          f"({_num(sd)})"
                row[f"{arm} total"] = (str(int(x.sum())) if kind != "volume" and len(x)
                                       else "\u2014")
            primary = _pick(sub, PRIMARY_MODELS[kind])
            adjusted = _pick(sub, ADJUSTED_MODELS[kind])
            rank = _pick(sub, ("mann_whitney",))
            row[f"estimate ({ci})"] = _estimate(primary)
            row["model"] = primary["model"] if primary is not None else "\u2014"
            row["p"] = _p(primary["p_value"]) if primary is not None else "\u2014"
            row[f"adjusted ({ci})"] = _estimate(adjusted)
            row["p adj."] = _p(adjusted["p_value"]) if adjusted is not None else "\u2014"
            row["p rank"] = _p(rank["p_value"]) if rank is not None else "\u2014"
            rows.append(row)
            significant.append(primary is not None and pd.notna(primary["p_value"])
                               and float(primary["p_value"]) < alpha)
    return pd.DataFrame(rows), significant


# --------------------------------------------------------------------------- plots

def endpoint_plot(values: Mapping[str, Mapping[str, np.ndarray]], title: str, ylabel: str,
                  seed: int) -> bytes:
    """Box plots by arm with every subject as a jittered point, one panel per interval.

    Parameters
    ----------
    values : interval -> arm -> (n,) values
    title, ylabel : labels
    seed : jitter seed (fixed: same plot every run)

    Returns
    -------
    PNG bytes
    """
    rng = np.random.default_rng(seed)
    n_panels = max(len(values), 1)
    fig = Figure(figsize=(3.2 * n_panels + 0.6, 3.2), dpi=100)
    axes = np.atleast_1d(fig.subplots(1, n_panels, sharey=True, squeeze=False)[0])
    colours = ("#c0392b", "#2471a3", "#7d3c98", "#1e8449")
    for ax, (interval, by_arm) in zip(axes, values.items()):
        arms = list(by_arm)
        data = [np.asarray(by_arm[a], dtype=float) for a in arms]
        positions = np.arange(1, len(arms) + 1)
        nonempty = [i for i, d in enumerate(data) if len(d)]
        if nonempty:
            ax.boxplot([data[i] for i in nonempty], positions=positions[nonempty], widths=0.5,
                       showfliers=False, medianprops={"color": "black"})
        for i, d in enumerate(data):
            jitter = rng.uniform(-0.15, 0.15, len(d))
            ax.scatter(positions[i] + jitter, d, s=14, alpha=0.7,
                       color=colours[i % len(colours)], zorder=3, linewidths=0)
        ax.set_xticks(positions, [f"{a}\n(n={len(d)})" for a, d in zip(arms, data)])
        ax.set_title(str(interval), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(ylabel)
    fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.08 if n_panels > 2 else 0.14, right=0.98, top=0.82, bottom=0.2,
                        wspace=0.08)
    return figure_png(fig)


def endpoint_plots(endpoints: pd.DataFrame, stats: pd.DataFrame, arm_column: str,
                   arms: Sequence[str], seed: int) -> list[tuple[str, bytes]]:
    """One plot per endpoint (relapses: one plot for all relapse columns): (caption, PNG)."""
    plots = []
    intervals = list(dict.fromkeys(stats.loc[stats.endpoint.isin(list(ENDPOINT_NAMES)),
                                             "interval"]))
    def by_arm(rows: pd.DataFrame, column: str) -> dict[str, np.ndarray]:
        return {a: rows.loc[rows[arm_column].astype(str) == a, column].dropna()
                .to_numpy(dtype=float) for a in arms}

    relapse = [e for e in stats["endpoint"].drop_duplicates()
               if _kind(e) == "relapse" and e in endpoints.columns]
    if relapse:
        people = endpoints.drop_duplicates("participant_id")
        labels = {e: stats.loc[stats.endpoint == e, "interval"].iloc[0] for e in relapse}
        values = {labels[e]: by_arm(people, e) for e in relapse}
        plots.append(("Relapses per participant", endpoint_plot(values, "Relapses", "relapses",
                                                                seed)))
    for endpoint, name in ENDPOINT_NAMES.items():
        if endpoint not in endpoints.columns:
            continue
        values = {i: by_arm(endpoints[endpoints["interval"] == i], endpoint) for i in intervals}
        ylabel = "mL" if endpoint == VOLUME_ENDPOINT else "lesions per participant"
        plots.append((f"{name} by arm and interval", endpoint_plot(values, name, ylabel, seed)))
    return plots


# --------------------------------------------------------------------------- report

def _figure_order(path: Path) -> tuple[int, str, str]:
    """Registration first, then lesions, then the per-interval figures, each by name."""
    rank = 0 if "desc-registration" in path.name else 1 if "desc-lesion" in path.name else 2
    return rank, path.name, str(path)


def _subject_of(path: Path) -> str | None:
    for part in (path.name, *reversed(path.parts)):
        if part.startswith("sub-"):
            return part.split("_")[0]
    return None


#: participant_id -> [(file name, PNG bytes)]
Figures = Mapping[str, Sequence[tuple[str, bytes]]]


def render_report(endpoints: pd.DataFrame, stats: pd.DataFrame, arm_column: str,
                  arms: Sequence[str], notes: pd.DataFrame | None = None, config: Any = None,
                  figures: Figures | None = None, skipped: pd.DataFrame | None = None,
                  params: StatsParams | None = None, title: str = "rebound-mri report",
                  excluded: pd.DataFrame | None = None,
                  discovery_notes: pd.DataFrame | None = None) -> str:
    """The report as one HTML string (see the module docstring for its sections).

    Parameters
    ----------
    endpoints : cohort endpoints.tsv
    stats : group_stats.tsv
    arm_column, arms : arm column and labels (first vs reference)
    notes : stats notes (endpoint, interval, model, note)
    config : configuration used (any JSON-serialisable object), shown pretty-printed
    figures : participant_id -> [(file name, PNG bytes)] QC figures
    skipped : intervals not run (participant_id, interval, reason, ...)
    params : StatsParams (CI level, plot jitter seed)
    title : page title
    excluded : excluded.tsv (participant_id, session, step, file, reason, fix): what these
        tables do not include; named in a banner at the top when not empty
    discovery_notes : discovery notes.tsv (participant_id, session, path, kind, reason): folders
        skipped, sessions not configured, participants without images

    Returns
    -------
    the HTML document (str)
    """
    params = params or StatsParams()
    arms = [str(a) for a in arms]
    figures = figures or {}
    participants = sorted(endpoints["participant_id"].astype(str).unique())
    parts = _head(title)
    parts += _summary(endpoints, participants, arm_column, arms, excluded)
    parts += _results(endpoints, stats, arm_column, arms, params)
    parts += _plots(endpoints, stats, arm_column, arms, params)
    parts += _subjects(endpoints, participants, arm_column, figures, skipped)
    parts += _notes(notes, discovery_notes)
    parts += _parameters(config)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _head(title: str) -> list[str]:
    return [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            "<nav><a href=\"#results\">Results</a><a href=\"#plots\">Plots</a>"
            "<a href=\"#subjects\">Subjects</a><a href=\"#notes\">Notes</a>"
            "<a href=\"#parameters\">Parameters</a></nav>"]


def _summary(endpoints: pd.DataFrame, participants: list[str], arm_column: str,
             arms: Sequence[str], excluded: pd.DataFrame | None) -> list[str]:
    """Who is in the tables, and a banner naming who is not."""
    counts = {a: int((endpoints.drop_duplicates("participant_id")[arm_column].astype(str)
                      == a).sum()) for a in arms}
    parts = [f"<p>{len(participants)} participants ("
             + ", ".join(f"{a}: {n}" for a, n in counts.items())
             + f"), {endpoints['interval'].nunique()} interval(s), {len(endpoints)} "
               "participant-interval rows.</p>"]
    if excluded is not None and len(excluded):
        who = sorted(excluded["participant_id"].astype(str).unique())
        parts.append(f"<div class=\"banner\"><strong>Not in these tables:</strong> "
                     f"{len(excluded)} session(s) or subject(s) of {len(who)} participant(s) "
                     f"({html.escape(', '.join(who))}) were refused, excluded or missing "
                     "(excluded.tsv):" + _table(_plain(excluded), left=tuple(excluded.columns))
                     + "</div>")
    return parts


def _results(endpoints: pd.DataFrame, stats: pd.DataFrame, arm_column: str,
             arms: Sequence[str], params: StatsParams) -> list[str]:
    """1. The cohort table by arm, and every model."""
    table, significant = cohort_table(endpoints, stats, arm_column, arms, params.alpha)
    parts = ["<h2 id=\"results\">Results by arm</h2>",
             f"<p class=\"note\">Estimates compare {html.escape(arms[0])} with "
             f"{html.escape(arms[1])} (reference): rate ratios for counts and relapses "
             "(negative binomial, or Poisson when NB cannot be fitted; see notes), "
             f"difference {html.escape(arms[0])} \u2212 {html.escape(arms[1])} in mean change "
             "for T2-LV (OLS). <em>adjusted</em>: with the configured covariates (and T2-LV at "
             "the interval start for T2-LV change). <em>p rank</em>: Mann\u2013Whitney U. "
             f"Rows with p &lt; {params.alpha:g} (primary model) in red.</p>"]
    if len(table):
        parts.append(_table(table, left=("Endpoint", "Interval", "model"),
                            row_class=["sig" if s else "" for s in significant],
                            p_columns=("p",)))
    else:
        parts.append("<p>No statistics.</p>")
    parts.append("<details><summary>All models (group_stats.tsv)</summary>"
                 + _table(_plain(stats), left=("endpoint", "interval", "model")) + "</details>")
    return parts


def _figure(caption: str, png: bytes) -> str:
    return (f"<figure><img alt=\"{html.escape(caption)}\" src=\"{png_data_uri(png)}\">"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _plots(endpoints: pd.DataFrame, stats: pd.DataFrame, arm_column: str,
           arms: Sequence[str], params: StatsParams) -> list[str]:
    """2. Endpoints by arm."""
    return ["<h2 id=\"plots\">Endpoints by arm</h2>"] + [
        _figure(caption, png)
        for caption, png in endpoint_plots(endpoints, stats, arm_column, arms, params.plot_seed)]


def _subjects(endpoints: pd.DataFrame, participants: list[str], arm_column: str,
              figures: Figures, skipped: pd.DataFrame | None) -> list[str]:
    """3. One fold per subject: its endpoints, skipped intervals and QC figures."""
    parts = ["<h2 id=\"subjects\">Subjects</h2>"]
    skipped = skipped if skipped is not None else pd.DataFrame(columns=["participant_id"])
    if "status" in skipped.columns:  # the discovery table lists run and skipped intervals
        skipped = skipped[skipped["status"].astype(str) == "skipped"]
    everyone = sorted(set(participants) | set(skipped.get("participant_id", pd.Series())
                                              .astype(str)) | set(figures))
    columns = [c for c in ENDPOINT_COLUMNS if c in endpoints.columns and c != "participant_id"]
    for pid in everyone:
        rows = endpoints[endpoints["participant_id"].astype(str) == pid]
        arm = rows[arm_column].astype(str).iloc[0] if len(rows) else "?"
        gaps = skipped[skipped["participant_id"].astype(str) == pid] if len(skipped) else skipped
        summary = f"{pid} \u2014 {arm} \u2014 {len(rows)} interval(s)"
        if len(gaps):
            summary += f", {len(gaps)} skipped"
        parts.append(f"<details{' open' if len(everyone) <= 10 else ''}><summary>"
                     f"{html.escape(summary)}</summary>")
        if len(rows):
            parts.append(_table(_plain(rows[columns]), left=("interval", "ses_start",
                                                              "ses_end")))
        if len(gaps):
            shown = [c for c in gaps.columns if c in ("interval", "session", "reason", "status")]
            parts.append("<p>Skipped:</p>" + _table(_plain(gaps[shown or list(gaps.columns)]),
                                                    left=tuple(shown)))
        parts += [_figure(name, png) for name, png in figures.get(pid, ())]
        parts.append("</details>")
    return parts


def _notes(notes: pd.DataFrame | None, discovery_notes: pd.DataFrame | None) -> list[str]:
    """4. Notes from the statistics and from the dataset discovery."""
    parts = ["<h2 id=\"notes\">Notes from the statistics</h2>"]
    if notes is not None and len(notes):
        parts.append(_table(_plain(notes), left=tuple(notes.columns)))
    else:
        parts.append("<p>None.</p>")
    parts.append("<h3>Notes from the dataset discovery</h3>")
    if discovery_notes is not None and len(discovery_notes):
        parts.append(_table(_plain(discovery_notes), left=tuple(discovery_notes.columns)))
    else:
        parts.append("<p>None: every folder was a subject or session of the configuration.</p>")
    return parts


def _parameters(config: Any) -> list[str]:
    """5. The configuration used and the software versions."""
    parts = ["<h2 id=\"parameters\">Parameters and software</h2>"]
    if config is not None:
        text = json.dumps(config, indent=2, sort_keys=True, default=str)
        parts.append(f"<h3>Configuration</h3><pre>{html.escape(text)}</pre>")
    versions = pd.DataFrame(list(software_versions().items()), columns=["software", "version"])
    parts.append("<h3>Software</h3>" + _table(versions, left=("software", "version")))
    return parts


def _read_optional(path: Path | None) -> pd.DataFrame | None:
    return read_tsv(path, dtype={"participant_id": str}) if path is not None else None


def report_files(out: str | Path, endpoints_path: str | Path, stats_path: str | Path,
                 html_path: str | Path, arm_column: str, arms: Sequence[str],
                 notes_path: str | Path | None = None, config_path: str | Path | None = None,
                 figure_paths: Sequence[str | Path] | None = None,
                 skipped_path: str | Path | None = None,
                 params: StatsParams | None = None,
                 excluded_path: str | Path | None = None,
                 discovery_notes_path: str | Path | None = None) -> Path:
    """Read the cohort outputs and write the report.

    QC figures: exactly ``figure_paths`` (each must exist), grouped by the ``sub-<label>`` of
    their file name, registration first, embedded via :func:`compact_png`.
    """
    endpoints = read_tsv(endpoints_path, dtype={"participant_id": str, "interval": str,
                                                arm_column: str})
    stats = read_tsv(stats_path, dtype={"interval": str, "model": str})
    notes = _read_optional(Path(notes_path) if notes_path else None)
    skipped = _read_optional(Path(skipped_path) if skipped_path else None)
    excluded = _read_optional(Path(excluded_path) if excluded_path else None)
    discovery_notes = _read_optional(Path(discovery_notes_path) if discovery_notes_path else None)
    config = None
    if config_path is not None:
        try:
            config = json.loads(Path(config_path).read_text())
        except FileNotFoundError:
            raise InputError(f"{config_path}: configuration JSON not found") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{config_path}: not valid JSON ({exc})") from exc
    paths = {Path(p) for p in figure_paths or ()}
    figures: dict[str, list[tuple[str, bytes]]] = {}
    for path in sorted(paths, key=_figure_order):
        if not path.exists():
            raise InputError(f"{path}: QC figure not found; re-run the qc step")
        subject = _subject_of(path)
        if subject is not None:
            figures.setdefault(subject, []).append((path.name, compact_png(path.read_bytes())))
    text = render_report(endpoints, stats, arm_column, arms, notes, config, figures, skipped,
                         params, excluded=excluded, discovery_notes=discovery_notes)
    with atomic_path(html_path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(html_path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline report",
                                 description="Write the self-contained HTML report.")
    ap.add_argument("--out", required=True, type=Path, help="derivatives root")
    ap.add_argument("--endpoints", required=True, type=Path)
    ap.add_argument("--group-stats", required=True, type=Path)
    ap.add_argument("--notes", type=Path, default=None)
    ap.add_argument("--config-json", type=Path, default=None)
    ap.add_argument("--figures", nargs="*", type=Path, default=[])
    ap.add_argument("--skipped", type=Path, default=None,
                    help="intervals not run (e.g. the discovery intervals.tsv)")
    ap.add_argument("--excluded", type=Path, default=None,
                    help="excluded.tsv: what the tables leave out and why (a banner)")
    ap.add_argument("--discovery-notes", type=Path, default=None,
                    help="discovery notes.tsv: folders skipped, sessions not configured, ...")
    ap.add_argument("--arm-column", default="arm")
    ap.add_argument("--arms", nargs=2, required=True, metavar=("FIRST", "REFERENCE"))
    ap.add_argument("--html", required=True, type=Path)
    ap.add_argument("--params", type=Path, default=None,
                    help="parameter JSON (python -m pipeline settings): StatsParams.alpha labels "
                         "the CIs, plot_seed jitters the strip plots")
    args = ap.parse_args(argv)
    def work() -> None:
        params = None
        if args.params is not None:
            from pipeline.settings import load_params
            params = load_params(args.params)["StatsParams"]
        report_files(args.out, args.endpoints, args.group_stats, args.html, args.arm_column,
                     args.arms, args.notes, args.config_json, args.figures, args.skipped,
                     params, args.excluded, args.discovery_notes)

    return run_command("report", work)
