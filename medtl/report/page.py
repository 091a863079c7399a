"""The report as one self-contained HTML page: figures embedded as data URIs, no scripts, no
network, so it opens from a laptop, a cluster's file browser or an e-mail attachment alike."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

from medtl.report.figures import Figure
from medtl.report.tables import Table, to_html

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.25rem; margin-top: 2rem;
     border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.meta { color: #555; font-size: .9rem; }
.counts span { display: inline-block; margin-right: 1rem; padding: .1rem .5rem; border-radius: .3rem;
               background: #f1f3f5; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .88rem; }
caption { caption-side: bottom; text-align: left; color: #444; font-size: .82rem; padding-top: .4rem;
          max-width: 72rem; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e3e3e3; vertical-align: top; }
thead th { border-bottom: 2px solid #333; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #444; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: .82rem; }
ul.notes li { color: #7a4b00; }
"""


@dataclass
class Page:
    title: str
    subtitle: str
    counts: dict[str, int]
    notes: list[str]
    tables: list[Table]
    figures: list[Figure]
    failed: Table | None
    unfinished: list[str]
    spec_name: str | None
    spec_text: str | None
    versions: dict[str, str]
    commands: Sequence[str] = ()


def _img(fig: Figure) -> str:
    data = base64.b64encode(fig.files["png"].read_bytes()).decode("ascii")
    return (
        f'<figure id="fig-{html.escape(fig.name)}"><img src="data:image/png;base64,{data}" '
        f'alt="{html.escape(fig.alt)}"><figcaption>{html.escape(fig.title)} '
        f"(<code>figures/{html.escape(fig.name)}.svg</code>)</figcaption></figure>"
    )


def render(page: Page) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(page.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(page.title)}</h1>",
        f'<p class="meta">{html.escape(page.subtitle)}</p>',
        '<p class="counts">'
        + "".join(f"<span>{html.escape(k)}: <strong>{v}</strong></span>" for k, v in page.counts.items())
        + "</p>",
    ]
    if page.notes:
        parts.append(
            '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in page.notes) + "</ul>"
        )
    parts.append("<h2>Results</h2>")
    parts += [to_html(t) for t in page.tables]
    parts.append(
        '<p class="meta">The same table as <a href="tables/results.md">Markdown</a>, '
        '<a href="tables/results.csv">CSV</a> (unrounded) and <a href="tables/results.tex">LaTeX</a> '
        '(booktabs); every run in <a href="tables/runs.csv">runs.csv</a>.</p>'
    )
    if page.figures:
        parts.append("<h2>Figures</h2>")
        parts += [_img(f) for f in page.figures]
    parts.append("<h2>Failed and unfinished runs</h2>")
    if page.failed is not None:
        parts.append(to_html(page.failed, "failed"))
    else:
        parts.append("<p>No run failed.</p>")
    if page.unfinished:
        parts.append(
            f"<p>{len(page.unfinished)} runs not finished yet: "
            + ", ".join(f"<code>{html.escape(u)}</code>" for u in page.unfinished)
            + "</p>"
        )
    parts.append("<h2>Sweep</h2>")
    if page.spec_text is not None:
        parts.append(f"<p>Spec <code>{html.escape(page.spec_name or '')}</code>:</p>")
        parts.append(f"<pre>{html.escape(page.spec_text, quote=False)}</pre>")
    else:
        parts.append("<p>No sweep spec was found beside the runs.</p>")
    if page.commands:
        parts.append("<pre>" + html.escape("\n".join(page.commands)) + "</pre>")
    parts.append("<h2>Versions</h2><table class='versions'><tbody>")
    parts += [
        f'<tr><td class="txt">{html.escape(k)}</td><td class="txt">{html.escape(v)}</td></tr>'
        for k, v in page.versions.items()
    ]
    parts.append("</tbody></table></body></html>")
    return "\n".join(parts) + "\n"
