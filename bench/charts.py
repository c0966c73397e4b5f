"""PNG pictures of benchmark runs for the docs (docs/_static/bench/), drawn by matplotlib.

``bench/report.py --png DIR LABEL ...`` computes the figures (the same ones as
its Markdown tables) and calls :func:`ratios_chart` and :func:`scale_chart`.
matplotlib is the ``bench`` extra's (``pip install -e .[bench]``), not the
package's; it is imported only when a picture is drawn, so the Markdown report
works without it.  The docs show the committed PNGs and never run this.

Every picture names its runs and their dates, so a picture and the RESULTS.md
section it comes from can be matched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

#: Bar colours per proxy (nginx is the 1.0 line).
COLOURS = {"haproxy": "#7a8699", "clbproxy": "#2f6fed"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> None:
    # No software version or time in the file: the same figures give the same PNG.
    figure.savefig(path, dpi=110, metadata={"Software": None})


def ratios_chart(
    rows: Sequence[tuple[str, dict[str, float]]], runs: Sequence[tuple[str, str]], path: Path
) -> None:
    """Grouped bars: per proxy CPU-second, each proxy against nginx, one group per scenario.

    ``rows``: ``(scenario title, {proxy: ratio})``; ``runs``: ``(label, date)``.
    """
    plt = _pyplot()
    proxies = [p for p in COLOURS if any(p in ratios for _, ratios in rows)]
    height = 0.8 / max(len(proxies), 1)
    figure, axes = plt.subplots(figsize=(8.5, 0.55 * len(rows) + 1.6 + 0.2 * len(runs)))
    for n, proxy in enumerate(proxies):
        ys = [i + (n - (len(proxies) - 1) / 2) * height for i in range(len(rows))]
        values = [ratios.get(proxy, 0.0) for _, ratios in rows]
        bars = axes.barh(ys, values, height=height * 0.92, color=COLOURS[proxy], label=proxy)
        for bar, value in zip(bars, values):
            axes.text(
                bar.get_width() + 0.01,
                bar.get_y() + bar.get_height() / 2,
                f"{value:.2f}x",
                va="center",
                fontsize=8,
            )
    axes.axvline(1.0, color="#d97706", linewidth=1.2, label="nginx = 1.0")
    axes.set_yticks(range(len(rows)), [title for title, _ in rows], fontsize=9)
    axes.invert_yaxis()
    axes.set_xlabel("work per proxy CPU-second, relative to nginx")
    axes.set_xlim(0, max([1.25] + [v * 1.15 for _, r in rows for v in r.values()]))
    # Below the axes: inside them the box can cover the last bars' labels.
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8, frameon=False)
    figure.suptitle(
        "Per proxy CPU-second against nginx and HAProxy\n"
        + "\n".join(f"[{label}]: run {label} ({date})" for label, date in runs),
        fontsize=10,
    )
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def scale_chart(scale: dict, label: str, date: str, path: Path) -> None:
    """The scale curve: RSS and idle CPU per session against open sessions, per worker count."""
    plt = _pyplot()
    figure, (memory, cpu) = plt.subplots(1, 2, figsize=(9, 3.6))
    for workers, curve in sorted(scale.get("curves", {}).items()):
        # The cold and warm-up rows (bench/scale.py) are not points of the curve.
        rows = [r for r in curve["rows"] if isinstance(r["sessions"], int)]
        name = f"workers = {workers}"
        memory.plot(
            [r["sessions"] for r in rows],
            [r["rss"] / 2**20 for r in rows],
            marker="o",
            label=name,
        )
        busy = [r for r in rows if r.get("idle_us_per_session") is not None]
        cpu.plot(
            [r["sessions"] for r in busy],
            [r["idle_us_per_session"] for r in busy],
            marker="o",
            label=name,
        )
    memory.set_xlabel("idle WebSocket sessions")
    memory.set_ylabel("proxy RSS (MiB, all processes)")
    cpu.set_xlabel("idle WebSocket sessions")
    cpu.set_ylabel("idle CPU per session (µs/s)")
    cpu.set_ylim(bottom=0)
    for axes in (memory, cpu):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(
        f"Idle sessions through one instance, ping every {scale.get('ping_interval')} s\n"
        f"run {label} ({date})",
        fontsize=10,
    )
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)
