"""The paper's tables as data (``reports/paper_tables.csv``): one row per model × metric, each
value with its source and a ``verified`` flag, and the protocol each table was measured with."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InputError
from ..registry import Registry, UnknownNameError
from ..settings import ENV_REPORTS, data_dir


@dataclass(frozen=True)
class PaperTable:
    """One of the paper's tables: its title, the name the zoo manifests use for it, and the
    protocol its numbers were measured with (a measured row that differs is marked)."""

    id: str
    title: str
    zoo_table: str | None
    protocol: dict[str, Any] = field(default_factory=dict)


# The paper's evaluation protocol (LAFITE sec. 5 and the metrics reference): 30,000 samples from
# the test captions (6,000 for MM-CelebA-HQ), the data set's test images as reference, FID-k with
# the author's blur (preset `lafite`), SOA with the SOA paper's YOLOv3 detector.
_COCO = {"n": 30000, "reference_kind": "coco", "blur_preset": "lafite", "detector": "yolov3"}

TABLES: Registry[PaperTable] = Registry("paper table")
TABLES.register("lang_free", PaperTable("lang_free", "Language-free text-to-image generation, MS-COCO 256²",
                                        "language-free (MS-COCO 256²)", _COCO), aliases=("language-free",))
TABLES.register("zero_shot", PaperTable("zero_shot", "Zero-shot text-to-image generation, MS-COCO 256²",
                                        "zero-shot (pre-trained on CC3M, evaluated on MS-COCO 256²)", _COCO),
                aliases=("zero-shot",))
TABLES.register("supervised", PaperTable("supervised", "Fully supervised text-to-image generation, MS-COCO 256²",
                                         "fully supervised (MS-COCO 256²)", _COCO), aliases=("fully-supervised",))
TABLES.register("supervised_other", PaperTable(
    "supervised_other", "Fully supervised, other data sets (CUB, LN-COCO, MM-CelebA-HQ)", None,
    {"n": 30000, "n_by_dataset": {"MM-CelebA-HQ 256": 6000}, "blur_preset": "lafite"}))
PAPER_TABLES = tuple(TABLES.names())


def get_table(name: str) -> PaperTable:
    """A paper table by id or alias; InputError with the known ids (and a did-you-mean)."""
    try:
        return TABLES.get(name)
    except UnknownNameError as e:
        raise InputError(f"unknown paper table: {e}", param="table") from None


def table_for_zoo(zoo_table: str) -> PaperTable | None:
    """The paper table a zoo manifest's ``[[paper]] table`` names, if any."""
    return next((TABLES.get(n) for n in TABLES.names() if TABLES.get(n).zoo_table == zoo_table), None)


def reports_dir() -> Path:
    """The ``reports/`` folder holding the paper's tables (``$LAFITEBENCH_REPORTS`` overrides)."""
    return data_dir("reports")


def paper_table(table: str | None = None) -> pd.DataFrame:
    """The paper's numbers as a long table (one row per model × metric).

    ``table`` selects one of ``lang_free``, ``zero_shot``, ``supervised``, ``supervised_other``;
    rows with ``verified == "no"`` are commonly cited numbers not checked against the paper.
    """
    path = reports_dir() / "paper_tables.csv"
    if not path.is_file():
        raise InputError(f"paper tables not found at {path}; set {ENV_REPORTS} to the repository's reports/ folder")
    df = pd.read_csv(path)
    if table is not None:
        if table not in TABLES:
            raise InputError(f"unknown paper table {table!r}; choose one of {', '.join(PAPER_TABLES)}")
        df = df[df["table"] == get_table(table).id].reset_index(drop=True)
    return df


def paper_wide(table: str) -> pd.DataFrame:
    """One of the paper's tables in its printed shape: models as rows, metrics as columns.

    A table that covers several data sets (``supervised_other``) labels its rows ``model (data set)``.
    """
    df = paper_table(table).copy()
    if df["dataset"].nunique() > 1:
        df["model"] = df["model"] + " (" + df["dataset"] + ")"
    order = list(dict.fromkeys(df["metric"]))
    wide = df.pivot_table(index="model", columns="metric", values="value", aggfunc="first")[order]
    return wide.loc[list(dict.fromkeys(df["model"]))]


def beside_paper(results: pd.DataFrame, table: str, label: str = "this run") -> pd.DataFrame:
    """Append a row with ``results`` (a result table) to the paper's ``table`` for the metrics it shares."""
    wide = paper_wide(table)
    ours = {m: v for m, v in zip(results["metric"], results["value"]) if m in wide.columns}
    if not ours:
        raise InputError(
            f"the results share no metric with paper table {table!r} "
            f"(results have {sorted(set(results['metric']))}; the table has {list(wide.columns)})"
        )
    row = pd.DataFrame([ours], index=[label]).reindex(columns=wide.columns)
    return pd.concat([wide, row])


