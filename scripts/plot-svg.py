#!/usr/bin/env python3
"""Draws a bench's JSON lines as an SVG line chart: the median of Y at each X, one line
per series, every run as a dot. No dependencies beyond Python.

  scripts/plot-svg.py RESULTS.jsonl OUT.svg --x peers --y server_cpu_us_per_packet \
      [--series build] [--title T] [--xlabel L] [--ylabel L]
"""
import argparse
import json
import statistics

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
W, H, LEFT, RIGHT, TOP, BOTTOM = 640, 360, 70, 20, 40, 50


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("out")
    ap.add_argument("--x", required=True)
    ap.add_argument("--y", required=True)
    ap.add_argument("--series")
    ap.add_argument("--title", default="")
    ap.add_argument("--xlabel", default=None)
    ap.add_argument("--ylabel", default=None)
    a = ap.parse_args()

    rows = [json.loads(line) for line in open(a.results) if line.strip()]
    rows = [r for r in rows if isinstance(r.get(a.x), (int, float)) and isinstance(r.get(a.y), (int, float))]
    if not rows:
        raise SystemExit(f"plot: no rows with numeric {a.x} and {a.y} in {a.results}")
    series = {}
    for r in rows:
        series.setdefault(str(r.get(a.series, "")) if a.series else "", []).append((r[a.x], r[a.y]))

    xs = sorted({x for points in series.values() for x, _ in points})
    ymax = max(y for points in series.values() for _, y in points) * 1.1
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x):  # categorical x: the values spread evenly (peer counts are often doubled)
        return LEFT + (xs.index(x) + 0.5) * plot_w / len(xs)

    def py(y):
        return TOP + plot_h - y / ymax * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{a.title}</text>']
    for i in range(6):  # y grid
        y = ymax * i / 5
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.0f}</text>')
    for x in xs:
        out.append(f'<text x="{px(x):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{x}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{H - 10}" text-anchor="middle">{a.xlabel or a.x}</text>')
    out.append(f'<text transform="translate(16,{TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">'
               f'{a.ylabel or a.y}</text>')
    for i, (name, points) in enumerate(sorted(series.items())):
        colour = COLOURS[i % len(COLOURS)]
        medians = [(x, statistics.median(y for px_, y in points if px_ == x)) for x in xs
                   if any(px_ == x for px_, _ in points)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in medians)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in points:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}" opacity="0.5"/>')
        for x, y in medians:
            out.append(f'<text x="{px(x) + 6:.1f}" y="{py(y) - 6:.1f}" fill="{colour}">{y:.1f}</text>')
        if name and len(series) > 1:
            out.append(f'<text x="{W - RIGHT - 4}" y="{TOP + 14 + 16 * i}" text-anchor="end" fill="{colour}">{name}</text>')
    out.append("</svg>")
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
