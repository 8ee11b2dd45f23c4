"""The outputs of a bench run: the table on stdout, latest.json, and the ratio chart (PNG)."""

from __future__ import annotations

import json
from pathlib import Path

VERDICT = {"pass": "PASS", "miss": "MISS <<<", "skip": "SKIP", "error": "ERROR <<<", "info": "INFO"}


def short(text: str, n: int = 260) -> str:
    """A long reason (a log tail with a traceback) keeps its start and its end, where the error is."""
    return text if len(text) <= n else f"{text[:60]} ... {text[-(n - 65):]}"


def _fmt(v, metric: str) -> str:
    if v is None:
        return "-"
    if metric in ("rps", "req_per_cpu_s", "msg_s"):
        return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
    return f"{v:.2f}"


def table(results: list[dict], curve: dict | None) -> str:
    rows = [("scenario", "peer", "unit", "ours", "peer", "ours/peer", "target", "verdict", "cpu us/req ours/peer")]
    for r in results:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        target = f"{r['target_op']} {r['target']}" if r["target"] is not None else "-"
        if r.get("target_on") == "ours" and r["target"] is not None:   # absolute, on our figure
            target = f"ours {r['target_op']} {r['target']:g} {r['unit']}"
        cpu = r.get("server_cpu_us_per_request") or {}
        cpu_s = "/".join("-" if cpu.get(k) is None else f"{cpu[k]:.0f}" for k in ("ours", "peer")) if cpu else ""
        rows.append((r["id"], r["peer_name"], r["unit"], _fmt(r["ours"]["median"], r["metric"]),
                     _fmt(r["peer"]["median"], r["metric"]), ratio, target, VERDICT[r["status"]], cpu_s))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r['id']}: {short(r['reason'])}" for r in results if r.get("reason")]
    if notes:
        lines += ["", "notes:"] + notes
    if curve:
        lines += ["", curve["title"]]
        if curve.get("reason"):
            lines.append(f"  {curve['reason']}")
        crow = [("curve", "workers", "async", "req/s", "ideal", "efficiency", "p50 ms", "note")]
        for p in curve["points"]:
            eff = f"{p['rps'] / p['ideal']:.0%}" if p.get("rps") is not None else "-"
            crow.append((p["series"], str(p["workers"]), str(p["async"]),
                         "-" if p.get("rps") is None else f"{p['rps']:,.0f}", f"{p['ideal']:,.0f}", eff,
                         "-" if p.get("p50_ms") is None else f"{p['p50_ms']:.1f}", short(p.get("problem") or "", 120)))
        w = [max(len(r[i]) for r in crow) for i in range(len(crow[0]))]
        lines += ["  " + "  ".join(c.ljust(x) for c, x in zip(r, w)).rstrip() for r in crow]
    passed = sum(r["status"] == "pass" for r in results)
    missed = [r["id"] for r in results if r["status"] == "miss"]
    errors = [r["id"] for r in results if r["status"] == "error"]
    lines += ["", f"targets met: {passed} of {sum(r['status'] in ('pass', 'miss') for r in results)} measured"
                  + (f"; MISSED: {', '.join(missed)}" if missed else "")
                  + (f"; ERRORS: {', '.join(errors)}" if errors else "")]
    return "\n".join(lines)


def write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    tmp.replace(path)


def chart(path: Path, results: list[dict], curve: dict | None, subtitle: str) -> str | None:
    """Ratios ours/peer against their targets (green met, red missed), and the scaling curve."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no chart"
    measured = [r for r in results if r["ratio"] is not None]
    has_curve = bool(curve and any(p.get("rps") for p in curve["points"]))
    fig, axes = plt.subplots(1, 2 if has_curve else 1, figsize=(14 if has_curve else 9, 6),
                             gridspec_kw={"width_ratios": [3, 2]} if has_curve else None)
    ax = axes[0] if has_curve else axes
    # Every scenario gets a row: unmeasured ones say why (ERROR in red, SKIP in grey).
    rows = results[::-1]
    ratios = [r["ratio"] for r in measured] or [1.0]
    lo = min(0.1, min(ratios) * 0.8)
    hi = max(max(ratios), max((r["target"] for r in measured if r["target"] is not None), default=1.0)) * 4
    for i, r in enumerate(rows):
        if r["ratio"] is None:
            ax.text(lo * 1.1, i, f"{r['status'].upper()}: not measured on both sides",
                    va="center", fontsize=8, color="#c0392b" if r["status"] == "error" else "grey")
            continue
        color = {"pass": "#2e8b57", "info": "#7f8c8d"}.get(r["status"], "#c0392b")
        ax.barh(i, r["ratio"], color=color, height=0.6)
        if r["target"] is None:
            ax.text(r["ratio"] * 1.08, i, f"{r['ratio']:.2f} (no target)", va="center", fontsize=8)
            continue
        if r.get("target_on") == "ours":     # the target is on our own figure, not on the ratio
            ax.text(r["ratio"] * 1.08, i, f"{r['ratio']:.2f} (target: ours {r['target_op']} {r['target']:g} "
                    f"{r['unit']}, ours {r['ours']['median']:.2f})", va="center", fontsize=8)
            continue
        ax.plot([r["target"], r["target"]], [i - 0.4, i + 0.4], color="black", lw=2)
        ax.text(max(r["ratio"], r["target"]) * 1.08, i,
                f"{r['ratio']:.2f} (target {r['target_op']} {r['target']})", va="center", fontsize=8)
    ax.set_yticks(list(range(len(rows))))
    ax.set_yticklabels([f"{r['id']}\n({'higher' if r['target_op'] == '>=' else 'lower'} is better)"
                        for r in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.axvline(1.0, color="grey", ls=":", lw=1)
    ax.set_xlabel("ours / peer (log scale); black tick = target")
    ax.set_title("ratio ours/peer vs target (green met, red missed, grey no target)", fontsize=10)
    if has_curve:
        cx = axes[1]
        for series, marker in (("workers", "o"), ("async", "s")):
            pts = [p for p in curve["points"] if p["series"] == series and p.get("rps")]
            if not pts:
                continue
            xs = [p["workers"] if series == "workers" else p["async"] for p in pts]
            cx.plot(xs, [p["rps"] for p in pts], marker=marker, label=f"--{series if series == 'async' else 'processes'} N (measured)")
            cx.plot(xs, [p["ideal"] for p in pts], ls="--", lw=1, label=f"--{series if series == 'async' else 'processes'} N (ideal)")
        cx.set_xscale("log", base=2)
        cx.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        cx.set_yscale("log")
        cx.set_xlabel("N")
        cx.set_ylabel("req/s")
        cx.set_title("scaling: app waits 50 ms (ours only)", fontsize=10)
        cx.legend(fontsize=8)
    fig.suptitle(subtitle, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
