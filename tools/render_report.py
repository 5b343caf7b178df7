"""Render reports/report.html to a PDF and one PNG per page, without a browser.

WeasyPrint lays the page out with the report's ``@media print`` stylesheet (what a browser's "Print to PDF"
uses), PyMuPDF rasterises each PDF page, so the printed layout can be checked by eye or by a tool. Neither
package is a project dependency; run it with uvx:

    uvx --with weasyprint --with pymupdf python tools/render_report.py reports/report.html --out /tmp/render

Writes ``<out>/report.pdf`` and ``<out>/page-01.png``, ... and prints their paths and the page count.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: Resolution of the page images (A4 at 110 dpi is ~910 x 1290 px: readable, small enough to look at).
DEFAULT_DPI = 110


def render_pdf(html_path: Path, pdf_path: Path) -> Path:
    """The report as a PDF, laid out with its print stylesheet (A4 unless the CSS sets a page size)."""
    from weasyprint import HTML

    HTML(filename=str(html_path)).write_pdf(str(pdf_path), media_type="print")
    return pdf_path


def render_pages(pdf_path: Path, out_dir: Path, dpi: int = DEFAULT_DPI) -> list[Path]:
    """One PNG per page of ``pdf_path`` in ``out_dir`` (``page-01.png``, ...)."""
    import pymupdf

    paths = []
    with pymupdf.open(pdf_path) as doc:
        for i, page in enumerate(doc, 1):
            path = out_dir / f"page-{i:02d}.png"
            page.get_pixmap(dpi=dpi).save(str(path))
            paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path, help="the report (reports/report.html)")
    ap.add_argument("--out", type=Path, required=True, help="folder for report.pdf and the page PNGs")
    ap.add_argument("--dpi", type=int, default=DEFAULT_DPI, help="resolution of the page images")
    a = ap.parse_args(argv)
    if not a.html.is_file():
        print(f"error: {a.html}: not a file (build it with `hand-gestures report`)", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    pdf = render_pdf(a.html, a.out / "report.pdf")
    pages = render_pages(pdf, a.out, a.dpi)
    print(f"{pdf}: {len(pages)} pages\n" + "\n".join(str(p) for p in pages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
