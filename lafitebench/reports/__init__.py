"""Reports: the paper's tables as data, result files, measured runs merged beside the paper
(CSV, Markdown, LaTeX, JSON), a leaderboard, and a standalone HTML page.

Modules: ``paper`` (the tables and their protocols), ``results`` (result files), ``merge``
(measured rows, aggregation, deltas, protocol marks), ``render`` (formatting and file
formats), ``plots`` (matplotlib SVG), ``html`` (the page).
"""
from __future__ import annotations

from .paper import PAPER_TABLES, TABLES, PaperTable, beside_paper, get_table, paper_table, paper_wide, reports_dir
from .results import load_result, result_files, rich_table, save_result, to_markdown

__all__ = ["PAPER_TABLES", "TABLES", "PaperTable", "beside_paper", "get_table", "paper_table", "paper_wide",
           "reports_dir", "load_result", "result_files", "rich_table", "save_result", "to_markdown"]
