"""summary.svg: the table of summary.md as a picture.  For every row, one
horizontal bar per peer: tlbd's ratio to that peer (report.Report.ratio,
so >= 1 means tlbd is at least as good), on a logarithmic axis with the 1x
line marked, and a whisker over the ratio's range given by the min-max of
the repetitions of both cells (tlbd's worst against the peer's best, and
the other way round).  Rows are grouped by section, as in the table.

A standalone SVG: no script, no external file, generic font families.
Each bar carries its figures (data-row, data-peer, data-ratio, data-min,
data-max) so a test can read the picture back.  Standard library only.
"""

import math
import textwrap
from xml.sax.saxutils import escape, quoteattr

from .report import SECTION_TITLES, better_ratio

WIDTH = 1000
LABEL_W = 300          # row names, right-aligned before the plot
PLOT_X = LABEL_W + 10
PLOT_W = 540
BAR_H = 9
BAR_GAP = 2
ROW_GAP = 9
SECTION_H = 34

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
           "#8c564b", "#e377c2", "#17becf"]
TICKS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200,
         500, 1000]


def peers_of(report, row):
    """The servers tlbd's row is compared with."""
    return [s for s in report.servers_for(row)
            if s != "tlbd" or row.section == "raw"]


def ratio_range(report, row, peer):
    """(low, high) ratio over the min-max of both cells, or None."""
    t = report.tlbd_cell(row)
    c = report.cell(row, peer)
    if t is None or not (t.ok and c.ok):
        return None
    tv, cv = t.values(), c.values()
    if not tv or not cv:
        return None
    ends = [better_ratio(row, a, b) for a in (min(tv), max(tv))
            for b in (min(cv), max(cv))]
    ends = [e for e in ends if e]
    return (min(ends), max(ends)) if ends else None


def bars(report):
    """[(row, [(peer, ratio, (low, high)) or (peer, None, why)])]."""
    out = []
    for row in report.rows:
        got = []
        for peer in peers_of(report, row):
            r = report.ratio(row, peer)
            if r is None:
                c = report.cell(row, peer)
                why = ("n/a" if c.na is not None else
                       "error" if c.errors else "no result")
                got.append((peer, None, why))
            else:
                got.append((peer, r, ratio_range(report, row, peer)))
        out.append((row, got))
    return out


def axis_range(data):
    lo, hi = 0.5, 2.0
    for _, got in data:
        for _, r, rng in got:
            if r is None:
                continue
            for v in (r,) + tuple(rng or ()):
                lo, hi = min(lo, v), max(hi, v)
    lo = max([t for t in TICKS if t <= lo] or [TICKS[0]])
    hi = min([t for t in TICKS if t >= hi] or [TICKS[-1]])
    return lo, hi


def fmt_ratio(v):
    return ("%.2f" % v if v < 10 else "%.1f" % v if v < 100
            else "%.0f" % v) + "\u00d7"


def summary_svg(report, env, opts):
    """The picture of REPORT's ratios, as SVG text.  ENV: summary.py's
    environment (date, command, tlbd version); OPTS: the run's options
    (reps, runtime)."""
    data = bars(report)
    lo, hi = axis_range(data)
    llo, lspan = math.log10(lo), math.log10(hi) - math.log10(lo)

    def x_of(v):
        v = min(max(v, lo), hi)
        return PLOT_X + (math.log10(v) - llo) / lspan * PLOT_W

    peer_names = []
    for _, got in data:
        for peer, _, _ in got:
            if peer not in peer_names:
                peer_names.append(peer)
    colour = {p: COLOURS[i % len(COLOURS)] for i, p in enumerate(peer_names)}

    run = ("%s, tlbd %s, %d repetitions of %g s per fio job; command: %s"
           % (env.get("date", ""), env.get("tlbd", ""), opts.reps,
              opts.runtime, env.get("command", "")))
    notes = textwrap.wrap(run, width=150, break_on_hyphens=False)
    notes.append("bar: the ratio of the medians (tlbd/peer for rates, "
                 "peer/tlbd for times); whisker: its range over the "
                 "min\u2013max of both cells; >= 1\u00d7: tlbd is at least "
                 "as good")
    legend_y = 50 + 18 * len(notes)
    top = legend_y + 50

    shade = []    # row backgrounds, under the grid
    body = []
    y = top
    section = None
    stripe = False
    for row, got in data:
        if row.section != section:
            section = row.section
            y += 8
            # a band over the grid, with the section's title
            body.append('<rect x="0" y="%.1f" width="%d" height="%d" '
                        'fill="white"/><text x="12" y="%.1f" font-size="14" '
                        'font-weight="bold">%s</text>'
                        % (y - 2, WIDTH, SECTION_H - 8, y + 16,
                           escape(SECTION_TITLES.get(section, section))))
            y += SECTION_H - 8
        h = len(got) * (BAR_H + BAR_GAP) - BAR_GAP
        body.append('<g class="row" data-row=%s data-section=%s>'
                    % (quoteattr(row.name), quoteattr(row.section)))
        stripe = not stripe
        if stripe:
            shade.append('<rect x="4" y="%.1f" width="%d" height="%d" '
                         'fill="#f3f3f3"/>' % (y - 4, WIDTH - 8, h + 8))
        body.append('<text x="%d" y="%.1f" text-anchor="end" '
                    'font-size="12">%s <tspan fill="#666">(%s)</tspan>'
                    '</text>' % (LABEL_W, y + h / 2 + 4, escape(row.name),
                                 escape(row.unit)))
        for i, (peer, r, rng) in enumerate(got):
            by = y + i * (BAR_H + BAR_GAP)
            if r is None:
                body.append('<text class="missing" data-peer=%s x="%.1f" '
                            'y="%.1f" font-size="9" fill="#888">%s: %s'
                            '</text>' % (quoteattr(peer), x_of(1) + 4,
                                         by + BAR_H - 1, escape(peer), rng))
                continue
            x0, x1 = sorted((x_of(1), x_of(r)))
            low, high = rng if rng else (r, r)
            body.append('<rect class="bar" data-peer=%s data-ratio="%.4g" '
                        'data-min="%.4g" data-max="%.4g" x="%.1f" y="%.1f" '
                        'width="%.1f" height="%d" fill="%s"/>'
                        % (quoteattr(peer), r, low, high, x0, by,
                           max(x1 - x0, 1.0), BAR_H, colour[peer]))
            wy = by + BAR_H / 2
            body.append('<path d="M%.1f %.1fH%.1fM%.1f %.1fV%.1fM%.1f %.1fV'
                        '%.1f" stroke="#222" stroke-width="1" fill="none"/>'
                        % (x_of(low), wy, x_of(high), x_of(low), wy - 3,
                           wy + 3, x_of(high), wy - 3, wy + 3))
            body.append('<text x="%.1f" y="%.1f" font-size="9" '
                        'fill="#333">%s</text>'
                        % (max(x_of(high), x1) + 4, by + BAR_H - 1,
                           fmt_ratio(r)))
        body.append('</g>')
        y += h + ROW_GAP
    bottom = y + 6
    height = bottom + 44

    head = ['<?xml version="1.0" encoding="UTF-8"?>',
            '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
            'viewBox="0 0 %d %d" font-family="sans-serif">'
            % (WIDTH, height, WIDTH, height),
            '<rect width="100%" height="100%" fill="white"/>',
            '<text x="12" y="24" font-size="17" font-weight="bold">tlbd '
            'benchmark: how many times better tlbd is than each peer</text>',
            ]
    for i, note in enumerate(notes):
        head.append('<text x="12" y="%d" font-size="12" fill="#333">%s'
                    '</text>' % (44 + 18 * i, escape(note)))
    # legend: one swatch per peer
    lx = 12
    for p in peer_names:
        head.append('<rect x="%d" y="%d" width="14" height="10" '
                    'fill="%s"/><text x="%d" y="%d" font-size="12">%s</text>'
                    % (lx, legend_y - 9, colour[p], lx + 18, legend_y,
                       escape(p)))
        lx += 18 + 7 * len(p) + 18
    head += shade
    # axis: grid lines and labels at the top and the bottom, the 1x line
    for t in TICKS:
        if lo <= t <= hi:
            x = x_of(t)
            if t != 1:
                head.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" '
                            'stroke="#ddd"/>' % (x, top - 8, x, bottom))
            for ty in (top - 12, bottom + 16):
                head.append('<text x="%.1f" y="%.1f" font-size="11" '
                            'text-anchor="middle">%s</text>'
                            % (x, ty, fmt_ratio(t)))
    head.append('<line class="one" x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" '
                'stroke="#333" stroke-width="2"/>'
                % (x_of(1), top - 8, x_of(1), bottom))
    head.append('<text x="%.1f" y="%.1f" font-size="12" '
                'text-anchor="middle">tlbd/peer (logarithmic; right of the '
                'thick 1\u00d7 line: tlbd is better)</text>'
                % (PLOT_X + PLOT_W / 2, bottom + 34))
    return "\n".join(head + body + ["</svg>", ""])
