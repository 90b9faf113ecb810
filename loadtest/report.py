"""Reports of load tests: markdown, one self-contained HTML file, and PNG plots.

    write_report(folder, summary, records)  one run      -> report.md, report.html, plots/*.png
    write_comparison(folder, summaries)     runs side by side -> compare.md/.html, plots/compare.png
    write_sweep_report(folder, sweep)       a rate sweep -> sweep.md/.html, plots/sweep.png
    write_frontier(folder, sweeps)          several sweeps -> frontier.md/.html, plots/frontier.png

Each report is built once as a list of plain blocks (headings, paragraphs, tables, images) and
rendered twice: to markdown, with images as relative links `plots/NAME.png`, and to HTML, with
the same images embedded as base64 data URIs, so both say the same thing. Plots are drawn only
where the data allows (a summary without records gives the summary-based ones). matplotlib is
imported inside the plotting functions and draws on its Agg canvas, without pyplot's global
state. Every cost figure names which cost it is: provisioned or attributed (loadtest/metrics.py).
None is shown as "–".
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from loadtest.metrics import ATTRIBUTED, PROVISIONED
from loadtest.records import BACKEND_HEADER, COST_HEADER, Record
from loadtest.results import SUMMARY

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["write_comparison", "write_frontier", "write_report", "write_sweep_report"]

PLOTS = "plots"
NA = "–"
_SHARE_BINS = 20  # backend share over time: the sent span in this many bins
_DPI = 100


# ---------------------------------------------------------------------- public API


def write_report(folder: str | Path, summary: dict[str, Any],
                 records: list[Record] | None) -> dict[str, Path]:
    """One run's report: `folder/report.md`, `folder/report.html` and `folder/plots/*.png`.
    `records` may be None (a simulated run, or one whose records are gone): then only the
    summary-based content. Returns the files written, keyed by their path under `folder`."""
    folder = Path(folder)
    measured = [r for r in records or [] if not r.warmup]
    ok = [r for r in measured if r.ok]
    colors = _backend_colors(measured)
    plots = _save_plots(folder, {
        "latency_cdf": _plot_latency_cdf(ok) if ok else None,
        "latency_over_time": _plot_latency_over_time(ok, colors) if ok else None,
        "backend_share": _plot_backend_share(measured, colors) if measured else None,
        "cost_vs_slo": _plot_cost_vs_slo([_cost_point(summary)]),
    })
    blocks = _report_blocks(summary, plots)
    return _write_doc(folder, "report", f"Load test: {_label(summary)}", blocks) | plots


def write_comparison(folder: str | Path, summaries: Sequence[dict[str, Any]]) -> dict[str, Path]:
    """Several runs side by side: `folder/compare.md`, `compare.html`, `plots/compare.png`
    (cost per 1M output tokens vs SLO attainment, one labelled point per run)."""
    folder = Path(folder)
    plots = _save_plots(folder, {"compare": _plot_cost_vs_slo([_cost_point(s) for s in summaries])})
    blocks: list[_Block] = [
        _Para(f"{len(summaries)} runs. Rates in req/s; latencies in ms; SLO attainment = "
              f"requests meeting every target they carry / measured requests; goodput = "
              f"requests meeting their SLO / measured window."),
        _Table(_COMPARE_HEADER, tuple(_compare_row(s) for s in summaries)),
        *_cost_legend(),
        _Heading("Runs"),
        _Bullets(tuple(_run_line(s) for s in summaries)),
        *_image(plots, "compare", "Cost per 1M output tokens vs SLO attainment, one point per "
                                  "run: provisioned filled, attributed hollow"),
    ]
    return _write_doc(folder, "compare", "Load test comparison", blocks) | plots


def write_sweep_report(folder: str | Path, sweep: dict[str, Any]) -> dict[str, Path]:
    """A rate sweep (schema costroute-loadtest-sweep): `folder/sweep.md`, `sweep.html` and
    `plots/sweep.png` (attainment and goodput vs offered rate); states the best point."""
    folder = Path(folder)
    plots = _save_plots(folder, {"sweep": _plot_sweep(sweep)})
    target = sweep.get("attainment_target")
    blocks: list[_Block] = [
        _Heading("What was run"),
        _Bullets(_facts(sweep) + (f"Attainment target: {_pct(target)} of requests meet "
                                  f"their SLO",)),
        *_command(sweep),
        _Heading("Best point"),
        _Para(_best_sentence(sweep)),
        _Heading("Points"),
        _Table(_SWEEP_HEADER, tuple(_sweep_row(p, sweep.get("best"))
                                    for p in _points(sweep))),
        *_cost_legend(),
        *_image(plots, "sweep", "SLO attainment and goodput vs offered rate"),
    ]
    return _write_doc(folder, "sweep", f"Rate sweep: {_label(sweep)}", blocks) | plots


def write_frontier(folder: str | Path, sweeps: Sequence[dict[str, Any]]) -> dict[str, Path]:
    """The price-performance frontier of several sweeps (e.g. each backend alone and the whole
    fleet): `folder/frontier.md`, `frontier.html`, `plots/frontier.png` (provisioned $ per 1M
    output tokens vs goodput, one line per sweep, its best point highlighted)."""
    folder = Path(folder)
    plots = _save_plots(folder, {"frontier": _plot_frontier(sweeps)})
    blocks: list[_Block] = [
        _Para("Each sweep's best point: the highest goodput among the rates whose SLO "
              "attainment meets the sweep's target."),
        _Table(_FRONTIER_HEADER, tuple(_frontier_row(s) for s in sweeps)),
        _Para(_cheapest_sentence(sweeps)),
        *_cost_legend(),
        *_image(plots, "frontier", "Provisioned $ per 1M output tokens vs goodput; a line per "
                                   "sweep, its best point starred"),
    ]
    return _write_doc(folder, "frontier", "Price-performance frontier", blocks) | plots


# ---------------------------------------------------------------------- formatting


def _fmt(x: float | None, spec: str) -> str:
    return NA if x is None else f"{x:{spec}}"


def _ms(x: float | None) -> str:
    return _fmt(x, ".1f")


def _usd(x: float | None) -> str:
    """Four significant digits: tiny runs cost fractions of a cent."""
    return NA if x is None else f"${x:.4g}"


def _pct(x: float | None) -> str:
    return NA if x is None else f"{x * 100:.1f}%"


def _rate(x: float | None) -> str:
    return _fmt(x, ".3g")


def _dig(data: Any, *keys: str) -> Any:
    """data[k1][k2]...; None where a level is missing."""
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _label(data: Mapping[str, Any]) -> str:
    """A run's (or sweep's) label, else its folder's name."""
    if data.get("label"):
        return str(data["label"])
    path = Path(str(data.get("_path") or "run"))
    return path.parent.name if path.name == SUMMARY else path.stem


def _shares(summary: Mapping[str, Any]) -> str:
    backends = summary.get("backends") or {}
    return ", ".join(f"{b} {_pct(v.get('share'))}" for b, v in backends.items()) or NA


# ---------------------------------------------------------------------- document blocks


@dataclass(frozen=True)
class _Heading:
    text: str


@dataclass(frozen=True)
class _Para:
    text: str


@dataclass(frozen=True)
class _Code:
    text: str


@dataclass(frozen=True)
class _Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class _Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class _Image:
    name: str  # plots/NAME.png
    caption: str


_Block: TypeAlias = _Heading | _Para | _Code | _Bullets | _Table | _Image


def _image(plots: Mapping[str, Path], name: str, caption: str) -> list[_Block]:
    return [_Image(name, caption)] if _plot_key(name) in plots else []


def _facts(data: Mapping[str, Any]) -> tuple[str, ...]:
    """What was run: target, workload, when."""
    target = data.get("target") or {}
    facts = [f"Target: model {target.get('model') or NA} at {target.get('url') or NA}"]
    if data.get("workload_description"):
        facts.append(f"Workload: {data['workload_description']}")
    facts.append(f"Created (UTC): {data.get('created_utc') or NA}")
    if data.get("simulated"):
        facts.append("Simulated: yes (no server was loaded)")
    return tuple(facts)


def _command(data: Mapping[str, Any]) -> list[_Block]:
    return [_Para("Command:"), _Code(str(data["command"]))] if data.get("command") else []


def _cost_legend() -> list[_Block]:
    return [_Bullets((f"{PROVISIONED}.", f"{ATTRIBUTED}."))]


# ---------------------------------------------------------------------- one run: sections


def _report_blocks(summary: Mapping[str, Any], plots: Mapping[str, Path]) -> list[_Block]:
    def image(name: str, caption: str) -> list[_Block]:
        return _image(plots, name, caption)

    return [
        _Heading("What was run"), _Bullets(_facts(summary)), *_command(summary),
        _Heading("Run"), _run_table(summary),
        _Heading("Latency (ms)"), _latency_table(summary),
        *image("latency_cdf", "Latency CDFs of the measured, completed requests (dashed: "
                              "the SLO target, where all requests share one)"),
        *image("latency_over_time", "TTFT and TPOT by the time each request was sent, "
                                    "coloured by backend"),
        _Heading("Throughput"), _throughput_table(summary),
        _Heading("SLO"), *_slo_blocks(summary),
        _Heading("Backends"), *_backend_blocks(summary),
        *image("backend_share", "Share of the requests sent to each backend, over time"),
        _Heading("Cost"), *_cost_blocks(summary),
        *image("cost_vs_slo", "Cost per 1M output tokens vs SLO attainment: provisioned "
                              "filled, attributed hollow"),
        _Heading("Errors"), *_error_blocks(summary),
    ]


def _run_table(s: Mapping[str, Any]) -> _Table:
    req, pacing = s.get("requests") or {}, s.get("pacing") or {}
    lag = pacing.get("schedule_lag_ms") or {}
    window = s.get("window_s")
    rows = (
        ("requests measured", f"{req.get('measured', NA)} "
                              f"(+{req.get('warmup', 0)} warm-up, excluded)"),
        ("completed", str(req.get("completed", NA))),
        ("failed", str(req.get("failed", NA))),
        ("measured window", NA if window is None else f"{window:.2f} s"),
        ("target rate (req/s)", _rate(pacing.get("target_rate_rps"))),
        ("achieved send rate (req/s)", _rate(pacing.get("achieved_rate_rps"))),
        ("schedule lag p50 / p99 / max (ms)",
         " / ".join(_ms(lag.get(k)) for k in ("median", "p99", "max"))),
    )
    return _Table(("", "value"), rows)


def _latency_table(s: Mapping[str, Any]) -> _Table:
    names = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2e": "E2E"}
    rows = []
    for key, name in names.items():
        st = _dig(s, "latency_ms", key) or {}
        rows.append((name, str(st.get("count", 0)),
                     *(_ms(st.get(k)) for k in ("mean", "median", "p90", "p99"))))
    return _Table(("metric", "count", "mean", "median", "p90", "p99"), tuple(rows))


def _throughput_table(s: Mapping[str, Any]) -> _Table:
    tp, tok = s.get("throughput") or {}, s.get("tokens") or {}
    rows = (
        ("completed requests / s", _fmt(tp.get("requests_per_s"), ".3g")),
        ("output tokens / s", _fmt(tp.get("output_tokens_per_s"), ".1f")),
        ("total (prompt + output) tokens / s", _fmt(tp.get("total_tokens_per_s"), ".1f")),
        ("prompt tokens", str(tok.get("prompt", NA))),
        ("output tokens", str(tok.get("output", NA))),
        ("output tokens of requests meeting their SLO", str(tok.get("output_meeting_slo", NA))),
    )
    return _Table(("", "value"), rows)


def _slo_blocks(s: Mapping[str, Any]) -> list[_Block]:
    slo = s.get("slo") or {}
    measured = _dig(s, "requests", "measured")
    overall = (f"SLO attainment {_pct(slo.get('attainment'))} ({slo.get('met', NA)} of "
               f"{measured if measured is not None else NA} measured requests met every target "
               f"they carry; errors count as misses); goodput {_rate(slo.get('goodput_rps'))} "
               f"req/s.")
    rows = tuple(
        (name, _targets(c.get("targets")), str(c.get("requests", NA)), str(c.get("met", NA)),
         _pct(c.get("attainment")), _rate(c.get("goodput_rps")))
        for name, c in (slo.get("classes") or {}).items())
    header = ("class", "targets", "requests", "met", "attainment", "goodput (req/s)")
    return [_Para(overall), _Table(header, rows)]


def _targets(targets: Mapping[str, float] | None) -> str:
    return ", ".join(f"{k} <= {v:g}" for k, v in (targets or {}).items()) or "none"


def _backend_blocks(s: Mapping[str, Any]) -> list[_Block]:
    per_hour = _dig(s, "cost", "provisioned", "backends_usd_per_hour") or {}
    rows = tuple(
        (b, str(v.get("requests", NA)), _pct(v.get("share")), str(v.get("completed", NA)),
         str(v.get("met_slo", NA)), _usd(per_hour.get(b)))
        for b, v in (s.get("backends") or {}).items())
    header = ("backend", "requests", "share", "completed", "met SLO", "provisioned $/hour")
    blocks: list[_Block] = [_Table(header, rows)]
    if "unknown" in (s.get("backends") or {}):
        blocks.append(_Para(f"unknown: the response carried no {BACKEND_HEADER} header "
                            f"(a failure before routing, or a server that does not send it)."))
    return blocks


def _cost_blocks(s: Mapping[str, Any]) -> list[_Block]:
    prov, attr = _dig(s, "cost", "provisioned"), _dig(s, "cost", "attributed")
    completed = _dig(s, "requests", "completed")
    notes = [
        f"{prov['what']}; source: {prov.get('source') or NA}; fleet "
        f"{_usd(prov.get('usd_per_hour'))}/hour." if prov else
        "provisioned: not computed (no fleet pricing was given).",
        f"{attr['what']}; {attr.get('requests_priced', NA)} of "
        f"{completed if completed is not None else NA} completed requests priced." if attr else
        f"attributed: not computed (no response carried {COST_HEADER}).",
    ]
    header = ("cost", "total", "per 1M output tokens", "per 1M total tokens",
              "per 1M output tokens of requests meeting SLO")
    prov, attr = prov or {}, attr or {}
    rows = (
        ("provisioned", *(_usd(prov.get(k)) for k in (
            "usd", "usd_per_1m_output_tokens", "usd_per_1m_total_tokens",
            "usd_per_1m_output_tokens_meeting_slo"))),
        ("attributed", *(_usd(attr.get(k)) for k in (
            "usd", "usd_per_1m_output_tokens", "usd_per_1m_total_tokens")), NA),
    )
    return [_Bullets(tuple(notes)), _Table(header, rows)]


def _error_blocks(s: Mapping[str, Any]) -> list[_Block]:
    errors = s.get("errors") or {}
    if not errors.get("count"):
        return [_Para("No measured request failed.")]
    by_status = tuple((status if status != "0" else "0 (no response)", str(n))
                      for status, n in (errors.get("by_status") or {}).items())
    blocks: list[_Block] = [_Para(f"{errors['count']} measured requests failed."),
                            _Table(("HTTP status", "requests"), by_status)]
    if errors.get("examples"):
        blocks += [_Para("Examples:"), _Bullets(tuple(map(str, errors["examples"])))]
    return blocks


# ---------------------------------------------------------------------- comparison, sweeps

_COMPARE_HEADER = (
    "run", "target req/s", "achieved req/s", "completed", "SLO attainment", "goodput req/s",
    "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "TPOT p99 ms", "output tok/s",
    "provisioned $/1M output tok", "attributed $/1M output tok", "backend share")


def _compare_row(s: Mapping[str, Any]) -> tuple[str, ...]:
    completed, measured = _dig(s, "requests", "completed"), _dig(s, "requests", "measured")
    return (
        _label(s), _rate(_dig(s, "pacing", "target_rate_rps")),
        _rate(_dig(s, "pacing", "achieved_rate_rps")), f"{completed} / {measured}",
        _pct(_dig(s, "slo", "attainment")), _rate(_dig(s, "slo", "goodput_rps")),
        _ms(_dig(s, "latency_ms", "ttft", "median")), _ms(_dig(s, "latency_ms", "ttft", "p99")),
        _ms(_dig(s, "latency_ms", "tpot", "median")), _ms(_dig(s, "latency_ms", "tpot", "p99")),
        _fmt(_dig(s, "throughput", "output_tokens_per_s"), ".1f"),
        _usd(_dig(s, "cost", "provisioned", "usd_per_1m_output_tokens")),
        _usd(_dig(s, "cost", "attributed", "usd_per_1m_output_tokens")),
        _shares(s),
    )


def _run_line(s: Mapping[str, Any]) -> str:
    where = f" ({s['_path']})" if s.get("_path") else ""
    what = s.get("workload_description") or "workload not described"
    return f"{_label(s)}{where}: {what}; created {s.get('created_utc') or NA}"


_SWEEP_HEADER = (
    "offered req/s", "run", "achieved req/s", "SLO attainment", "goodput req/s",
    "output tok/s", "provisioned $/1M output tok", "attributed $/1M output tok",
    "TTFT p50 ms", "TPOT p50 ms", "meets target")


def _points(sweep: Mapping[str, Any]) -> list[dict[str, Any]]:
    return sorted(sweep.get("points") or [], key=lambda p: p.get("rate_rps") or 0.0)


def _sweep_row(p: Mapping[str, Any], best: Mapping[str, Any] | None) -> tuple[str, ...]:
    meets = "yes" if p.get("meets_target") else "no"
    return (
        _rate(p.get("rate_rps")), str(p.get("run") or NA), _rate(p.get("achieved_rate_rps")),
        _pct(p.get("attainment")), _rate(p.get("goodput_rps")),
        _fmt(p.get("output_tokens_per_s"), ".1f"), _usd(p.get("usd_per_1m_output_tokens")),
        _usd(p.get("usd_per_1m_output_tokens_attributed")), _ms(p.get("ttft_p50_ms")),
        _ms(p.get("tpot_p50_ms")), f"{meets} (best)" if best and p == best else meets,
    )


def _cost_phrase(p: Mapping[str, Any]) -> str:
    parts = [f"{_usd(p[k])} per 1M output tokens ({kind})"
             for k, kind in (("usd_per_1m_output_tokens", "provisioned"),
                             ("usd_per_1m_output_tokens_attributed", "attributed"))
             if p.get(k) is not None]
    return " and ".join(parts) or "unknown cost (no pricing and no attributed cost)"


def _best_sentence(sweep: Mapping[str, Any]) -> str:
    target = _pct(sweep.get("attainment_target"))
    best = sweep.get("best")
    if not best:
        return (f"No rate reached SLO attainment >= {target}: sweep lower rates, or check the "
                f"SLO targets against the latency the backends can give.")
    return (f"Highest goodput at SLO attainment >= {target}: {_rate(best.get('goodput_rps'))} "
            f"req/s (offered {_rate(best.get('rate_rps'))} req/s, run {best.get('run')}, "
            f"attainment {_pct(best.get('attainment'))}) at {_cost_phrase(best)}.")


_FRONTIER_HEADER = (
    "sweep", "attainment target", "best offered req/s", "goodput req/s", "SLO attainment",
    "output tok/s", "provisioned $/1M output tok", "attributed $/1M output tok",
    "TTFT p50 ms", "TPOT p50 ms")


def _frontier_row(sweep: Mapping[str, Any]) -> tuple[str, ...]:
    best = sweep.get("best")
    head = (_label(sweep), _pct(sweep.get("attainment_target")))
    if not best:
        return head + ("none met the target",) + (NA,) * (len(_FRONTIER_HEADER) - 3)
    return head + (
        _rate(best.get("rate_rps")), _rate(best.get("goodput_rps")), _pct(best.get("attainment")),
        _fmt(best.get("output_tokens_per_s"), ".1f"), _usd(best.get("usd_per_1m_output_tokens")),
        _usd(best.get("usd_per_1m_output_tokens_attributed")), _ms(best.get("ttft_p50_ms")),
        _ms(best.get("tpot_p50_ms")))


def _cheapest_sentence(sweeps: Sequence[Mapping[str, Any]]) -> str:
    priced = [(s["best"]["usd_per_1m_output_tokens"], _label(s), s["best"]) for s in sweeps
              if s.get("best") and s["best"].get("usd_per_1m_output_tokens") is not None]
    if not priced:
        return "No sweep has a best point with a provisioned cost to compare."
    usd, label, best = min(priced, key=lambda t: t[0])
    return (f"Cheapest at its target: {label}, {_usd(usd)} per 1M output tokens (provisioned) "
            f"at {_rate(best.get('goodput_rps'))} req/s goodput.")


# ---------------------------------------------------------------------- rendering


def _write_doc(folder: Path, stem: str, title: str, blocks: Sequence[_Block]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    md, page = folder / f"{stem}.md", folder / f"{stem}.html"
    md.write_text(_markdown(title, blocks))
    page.write_text(_html(title, blocks, folder / PLOTS))
    return {md.name: md, page.name: page}


def _markdown(title: str, blocks: Sequence[_Block]) -> str:
    return "\n\n".join([f"# {title}", *(_md_block(b) for b in blocks)]) + "\n"


def _md_block(b: _Block) -> str:
    if isinstance(b, _Heading):
        return f"## {b.text}"
    if isinstance(b, _Para):
        return b.text
    if isinstance(b, _Code):
        return f"```\n{b.text}\n```"
    if isinstance(b, _Bullets):
        return "\n".join(f"- {item}" for item in b.items)
    if isinstance(b, _Table):
        rows = [b.header, tuple("---" for _ in b.header), *b.rows]
        return "\n".join(_md_row(r) for r in rows)
    return f"![{b.caption}]({PLOTS}/{b.name}.png)"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f2f2f2; }
td { font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; padding: 8px; white-space: pre-wrap; word-break: break-all; }
img { max-width: 100%; }
figcaption { color: #555; font-size: 13px; }
"""


def _html(title: str, blocks: Sequence[_Block], plots_dir: Path) -> str:
    body = "\n".join(_html_block(b, plots_dir) for b in blocks)
    t = html.escape(title)
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{t}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<h1>{t}</h1>\n"
            f"{body}\n</body>\n</html>\n")


def _html_block(b: _Block, plots_dir: Path) -> str:
    e = html.escape
    if isinstance(b, _Heading):
        return f"<h2>{e(b.text)}</h2>"
    if isinstance(b, _Para):
        return f"<p>{e(b.text)}</p>"
    if isinstance(b, _Code):
        return f"<pre><code>{e(b.text)}</code></pre>"
    if isinstance(b, _Bullets):
        return "<ul>" + "".join(f"<li>{e(item)}</li>" for item in b.items) + "</ul>"
    if isinstance(b, _Table):
        head = "".join(f"<th>{e(c)}</th>" for c in b.header)
        rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>"
                       for r in b.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    data = base64.b64encode((plots_dir / f"{b.name}.png").read_bytes()).decode("ascii")
    return (f"<figure><img alt=\"{e(b.caption)}\" src=\"data:image/png;base64,{data}\">"
            f"<figcaption>{e(b.caption)}</figcaption></figure>")


# ---------------------------------------------------------------------- plots


def _plot_key(name: str) -> str:
    return f"{PLOTS}/{name}.png"


def _figure(nrows: int = 1, ncols: int = 1, *, width: float = 6.0,
            height: float = 4.0) -> tuple[Figure, list[Axes]]:
    """A figure on its own Agg canvas (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, list(axes.flat)


def _save_plots(folder: Path, figures: Mapping[str, Figure | None]) -> dict[str, Path]:
    """Writes the figures that exist to folder/plots/NAME.png."""
    written: dict[str, Path] = {}
    for name, fig in figures.items():
        if fig is None:
            continue
        (folder / PLOTS).mkdir(parents=True, exist_ok=True)
        path = folder / _plot_key(name)
        fig.savefig(path, dpi=_DPI)
        written[_plot_key(name)] = path
    return written


def _backend_colors(records: Sequence[Record]) -> dict[str, str]:
    return {b: f"C{i % 10}" for i, b in enumerate(sorted({r.backend for r in records}))}


_LATENCIES: tuple[tuple[str, str, Callable[[Record], float | None]], ...] = (
    ("TTFT", "ttft_ms", lambda r: r.ttft_ms),
    ("TPOT", "tpot_ms", lambda r: r.tpot_ms),
    ("E2E", "e2e_ms", lambda r: r.e2e_ms),
)


def _common_target(records: Sequence[Record], key: str) -> float | None:
    """The SLO target on `key` when every request that carries one has the same."""
    targets = {r.slo[key] for r in records if key in r.slo}
    return targets.pop() if len(targets) == 1 else None


def _plot_latency_cdf(ok: Sequence[Record]) -> Figure:
    fig, axes = _figure(1, 3, width=4.2, height=3.4)
    for ax, (name, key, value) in zip(axes, _LATENCIES):
        v = np.sort([x for r in ok if (x := value(r)) is not None])
        if v.size:
            ax.step(v, np.arange(1, v.size + 1) / v.size, where="post")
        target = _common_target(ok, key)
        if target is not None:
            ax.axvline(target, color="red", linestyle="--", label=f"SLO {target:g} ms")
            ax.legend(loc="lower right", fontsize=8)
        ax.set(title=f"{name} CDF", xlabel=f"{name} (ms)", ylabel="fraction of requests",
               ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    return fig


def _plot_latency_over_time(ok: Sequence[Record], colors: Mapping[str, str]) -> Figure:
    fig, axes = _figure(2, 1, width=9.0, height=3.0)
    for ax, (name, _, value) in zip(axes, _LATENCIES[:2]):
        for backend, color in colors.items():
            pts = [(r.sent_s, x) for r in ok if r.backend == backend
                   and (x := value(r)) is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.scatter(xs, ys, s=10, color=color, alpha=0.7, label=backend)
        ax.set(ylabel=f"{name} (ms)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=8, title="backend")
    axes[-1].set_xlabel("request sent (s from the start of the run)")
    return fig


def _plot_backend_share(measured: Sequence[Record], colors: Mapping[str, str]) -> Figure:
    sent = np.array([r.sent_s for r in measured])
    lo, hi = float(sent.min()), float(sent.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, _SHARE_BINS + 1)
    index = np.clip(np.searchsorted(edges, sent, side="right") - 1, 0, _SHARE_BINS - 1)
    backends = np.array([r.backend for r in measured])
    totals = np.bincount(index, minlength=_SHARE_BINS).astype(float)
    fig, (ax,) = _figure(width=9.0, height=3.2)
    bottom = np.zeros(_SHARE_BINS)
    for backend, color in colors.items():
        counts = np.bincount(index[backends == backend], minlength=_SHARE_BINS)
        share = np.divide(counts, totals, out=np.zeros(_SHARE_BINS), where=totals > 0)
        ax.bar(edges[:-1], share, width=np.diff(edges), bottom=bottom, align="edge",
               color=color, label=backend, edgecolor="white", linewidth=0.3)
        bottom += share
    ax.set(xlabel="request sent (s from the start of the run)", ylabel="share of requests",
           ylim=(0, 1), title=f"Backend share over time ({_SHARE_BINS} bins)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="backend")
    return fig


@dataclass(frozen=True)
class _CostPoint:
    label: str
    attainment: float | None
    provisioned: float | None  # $ per 1M output tokens
    attributed: float | None


def _cost_point(summary: Mapping[str, Any]) -> _CostPoint:
    return _CostPoint(_label(summary), _dig(summary, "slo", "attainment"),
                      _dig(summary, "cost", "provisioned", "usd_per_1m_output_tokens"),
                      _dig(summary, "cost", "attributed", "usd_per_1m_output_tokens"))


def _plot_cost_vs_slo(points: Sequence[_CostPoint]) -> Figure | None:
    """Cost per 1M output tokens vs SLO attainment: provisioned filled, attributed hollow."""
    from matplotlib.lines import Line2D

    shown = [p for p in points if p.attainment is not None
             and (p.provisioned is not None or p.attributed is not None)]
    if not shown:
        return None
    fig, (ax,) = _figure(width=6.5, height=4.5)
    for i, p in enumerate(shown):
        x, color = (p.attainment or 0.0) * 100, f"C{i % 10}"
        if p.provisioned is not None:
            ax.scatter([x], [p.provisioned], s=70, color=color, zorder=3)
        if p.attributed is not None:
            ax.scatter([x], [p.attributed], s=70, facecolors="none", edgecolors=color,
                       linewidths=1.5, zorder=3)
        y = p.provisioned if p.provisioned is not None else p.attributed
        ax.annotate(p.label, (x, y), textcoords="offset points", xytext=(7, 4), fontsize=8)
    handles = [Line2D([], [], marker="o", linestyle="", color="0.3", label="provisioned"),
               Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                      markeredgecolor="0.3", label="attributed")]
    ax.legend(handles=handles, loc="best", fontsize=8)
    lowest = min(p.attainment or 0.0 for p in shown) * 100
    ax.set_xlim(max(0.0, lowest - 10), 102)
    ax.margins(y=0.15)
    ax.set_ylim(bottom=0)
    ax.set(xlabel="SLO attainment (%)", ylabel="$ per 1M output tokens",
           title="Cost vs SLO attainment")
    ax.grid(alpha=0.3)
    return fig


def _series(points: Sequence[Mapping[str, Any]], x: str, y: str) -> tuple[list[float],
                                                                          list[float]]:
    pairs = [(p[x], p[y]) for p in points if p.get(x) is not None and p.get(y) is not None]
    return [a for a, _ in pairs], [b for _, b in pairs]


def _plot_sweep(sweep: Mapping[str, Any]) -> Figure | None:
    points, best = _points(sweep), sweep.get("best")
    if not points:
        return None
    fig, (att, good) = _figure(1, 2, width=5.0, height=3.8)
    xs, ys = _series(points, "rate_rps", "attainment")
    att.plot(xs, [y * 100 for y in ys], marker="o")
    if sweep.get("attainment_target") is not None:
        att.axhline(sweep["attainment_target"] * 100, color="red", linestyle="--",
                    label=f"target {_pct(sweep['attainment_target'])}")
        att.legend(loc="lower left", fontsize=8)
    att.set(xlabel="offered rate (req/s)", ylabel="SLO attainment (%)", ylim=(0, 105),
            title="SLO attainment vs rate")
    good.plot(*_series(points, "rate_rps", "goodput_rps"), marker="o", label="goodput")
    good.plot(*_series(points, "rate_rps", "achieved_rate_rps"), linestyle="--", color="0.5",
              label="achieved send rate")
    if best and best.get("goodput_rps") is not None:
        good.scatter([best["rate_rps"]], [best["goodput_rps"]], marker="*", s=220, color="C3",
                     zorder=3, label="best at target")
    good.set(xlabel="offered rate (req/s)", ylabel="req/s", title="Goodput vs rate")
    good.legend(loc="upper left", fontsize=8)
    for ax in (att, good):
        ax.grid(alpha=0.3)
    return fig


def _plot_frontier(sweeps: Sequence[Mapping[str, Any]]) -> Figure | None:
    series = [(s, _series(_points(s), "goodput_rps", "usd_per_1m_output_tokens")) for s in sweeps]
    if not any(xs for _, (xs, _) in series):
        return None
    fig, (ax,) = _figure(width=7.5, height=5.0)
    for i, (sweep, (xs, ys)) in enumerate(series):
        color = f"C{i % 10}"
        ax.plot(xs, ys, marker="o", color=color, label=_label(sweep))
        best = sweep.get("best") or {}
        if best.get("goodput_rps") is not None and best.get("usd_per_1m_output_tokens") is not None:
            x, y = best["goodput_rps"], best["usd_per_1m_output_tokens"]
            ax.scatter([x], [y], marker="*", s=260, color=color, edgecolors="black", zorder=3)
            ax.annotate(f"offered {_rate(best.get('rate_rps'))} req/s", (x, y),
                        textcoords="offset points", xytext=(8, 6), fontsize=8)
    ax.set(xlabel="goodput (req/s meeting their SLO)",
           ylabel="provisioned $ per 1M output tokens",
           title="Price-performance frontier (star: best at the attainment target)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig
