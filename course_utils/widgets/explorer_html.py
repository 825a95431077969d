"""HTML views of the sampling explorer's state: generated text coloured by probability, and the log of steps.

Plain strings with inline styles, so they read the same inside a widget, in ``display(HTML(...))`` and in Voila;
no ipywidgets here. The state they show is `course_utils.explorer`'s (``StepRecord``).
"""
from __future__ import annotations

import html

from matplotlib import colormaps
from matplotlib.colors import to_hex

from course_utils.candidates import token_label
from course_utils.explorer import StepRecord
from course_utils.validation import check_int, check_real

TOKEN_COLOURMAP = "RdYlGn"  # red = the model found the token unlikely, green = likely


def probability_colour(probability: float) -> str:
    """Hex colour of a token chosen with this model probability (red = unlikely, green = likely)."""
    probability = check_real("probability", probability, low=0, high=1)
    return to_hex(colormaps[TOKEN_COLOURMAP](0.1 + 0.8 * probability))


def coloured_text_html(prompt: str, records: list[StepRecord], font_scale: float = 1.0) -> str:
    """The prompt in plain text followed by each generated token on a background coloured by its model probability."""
    font_scale = check_real("font_scale", font_scale, low=0, low_open=True)
    spans = [f'<span style="color:#555">{html.escape(prompt)}</span>']
    for record in records:
        title = (f"step {record.step}: p_model={record.prob_model:.3f}, p_sampled={record.prob_sampled:.3f}, "
                 f"{record.n_kept} candidates ({record.settings})")
        spans.append(f'<span class="explorer-token" title="{html.escape(title)}" '
                     f'style="background:{probability_colour(record.prob_model)};border-radius:3px">'
                     f'{html.escape(record.text)}</span>')
    # pre-wrap keeps the text's own spaces and newlines; overflow-wrap breaks tokens without spaces at the edge
    return (f'<div class="course-tokens" style="white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;'
            f'font-family:monospace;font-size:{1.0 * font_scale:.2f}em;line-height:1.6">{"".join(spans)}</div>')


# (header, share of the table's width): the table always fits its box; long tokens and settings wrap in their cell.
# Headers break only between words or at a soft hyphen (&shy;), never inside a word; a slightly smaller font and
# narrow padding let their longest word fit its column even in classroom size on a 1024 px screen.
_LOG_COLUMNS = (("step", 8), ("token", 16), ("p model", 10), ("p sam&shy;pled", 11), ("candi&shy;dates", 13),
                ("mass kept", 10), ("entropy (bits)", 13), ("set&shy;tings", 19))
_CELL = "padding:0.2em 0.5em;text-align:left;vertical-align:top;overflow-wrap:anywhere"
_HEADER = ("padding:0.2em 0.2em;font-size:0.9em;text-align:left;vertical-align:bottom;overflow-wrap:normal;"
           "hyphens:manual")


def log_html(records: list[StepRecord], last: int = 12, font_scale: float = 1.0) -> str:
    """An HTML table of the last ``last`` steps, newest first (padded cells, a ruled header, tokens that wrap)."""
    last = check_int("last", last, minimum=1)
    font_scale = check_real("font_scale", font_scale, low=0, low_open=True)
    columns = "".join(f'<col style="width:{share}%">' for _, share in _LOG_COLUMNS)
    header = "".join(f'<th style="{_HEADER};border-bottom:2px solid #888;font-weight:bold">{name}</th>'
                     for name, _ in _LOG_COLUMNS)
    rows = []
    for r in reversed(records[-last:]):
        cells = (str(r.step), f"<code>{html.escape(token_label(r.text))}</code>", f"{r.prob_model:.3f}",
                 f"{r.prob_sampled:.3f}", str(r.n_kept), f"{r.kept_mass:.1%}", f"{r.entropy_after:.2f}",
                 html.escape(r.settings))
        rows.append("<tr>" + "".join(f'<td style="{_CELL};border-bottom:1px solid #e4e4e4">{cell}</td>'
                                     for cell in cells) + "</tr>")
    return (f'<table class="course-log" style="font-size:{0.85 * font_scale:.2f}em;border-collapse:collapse;'
            f'table-layout:fixed;width:100%;max-width:64em;line-height:1.35">'
            f'<colgroup>{columns}</colgroup><tr>{header}</tr>{"".join(rows)}</table>')
