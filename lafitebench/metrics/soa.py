"""Semantic Object Accuracy (SOA-C / SOA-I, Hinz et al.) with an ultralytics COCO detector.

For each generated image of SOA class c, the class counts as detected when any box surviving
confidence filtering and NMS has c as its class (arg-max). ``acc_c = detected / images`` for c,
``SOA-C = mean_c acc_c`` over the classes present, ``SOA-I = Σ n_c acc_c / Σ n_c``; all in percent.

The official detector is darknet YOLOv3 at 256×256 with objectness ≥ 0.5 and NMS IoU 0.4.
Ultralytics detectors have no objectness: the threshold here is ultralytics' class confidence
(``conf > detector_conf``, default 0.5), NMS IoU 0.4 per class, input 256 (for ``.pt`` models;
exports with a fixed input size use theirs). The numbers therefore approximate the official ones;
the detector and threshold are part of the metric id (``soa_c_yolov8n-int8-openvino_conf0.5``).

Before ultralytics is first imported, this module sets (unless already set): ``YOLO_AUTOINSTALL=false``
(no silent pip installs), ``ULTRALYTICS_SAFE_LOAD=1`` (``.pt`` files load with ``weights_only``
and ultralytics' allow-list) and, when lafitebench is offline, ``YOLO_OFFLINE=1``; ultralytics'
log lines are moved from stdout to stderr so JSON on stdout stays clean.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from ..data.batch import Batch
from ..data.soa import SOA_CLASSES, soa_class
from ..encoders.detector import DEFAULT_DETECTOR_CONF, Detector, check_detector_conf, detector_id, resolve_detector
from ..errors import InputError
from ..options import Cli, Options, option
from .base import Metric, MetricOutput, MetricRow
from ..runtime.device import resolve_device


SOA_NOTES = (
    "SOA-C = mean over present classes of per-class detection accuracy, SOA-I = image-weighted mean, in %. "
    "Official: darknet YOLOv3, 256x256, objectness>=0.5, NMS IoU 0.4. Here: ultralytics detector, class "
    "confidence > threshold (no objectness), per-class NMS IoU 0.4: an approximation of the official numbers."
)


# --------------------------------------------------------------------------------------------
# Pure numerics
# --------------------------------------------------------------------------------------------


@dataclass
class SoaOptions(Options):
    """The SOA detector and its confidence threshold."""

    PANEL = "SOA"

    detector: str = option("yolov8n.pt", "Ultralytics COCO detector for SOA: a name (yolov8m.pt), a .pt file or an "
                                         "exported model folder.", cli=Cli("--detector", metavar="NAME|PATH"))
    detector_conf: float = option(DEFAULT_DETECTOR_CONF, "SOA detection confidence threshold, in (0, 1).",
                                  cli=Cli("--detector-conf", minimum=0.0, maximum=1.0))

    @classmethod
    def check(cls, config: Any) -> None:
        """A threshold in (0, 1)."""
        check_detector_conf(config.detector_conf)


def soa_from_detections(
    per_image_classes: Sequence[Iterable[int]], per_image_target: Sequence[int]
) -> tuple[float, float, pd.DataFrame]:
    """SOA-C, SOA-I (percent) and the per-class table from detections.

    Args:
        per_image_classes: for each image, the COCO class ids (0..79) detected in it.
        per_image_target: for each image, the class id it was generated for.

    Returns:
        ``(soa_c, soa_i, per_class)``; ``per_class`` has one row per class 0..79 with columns
        ``class_index, class_key, name, present, n_images, n_detected, acc`` (acc in %, NaN when
        the class has no images). SOA-C averages the present classes only.

    Raises:
        InputError: lengths differ, no images, or a target outside 0..79.
    """
    if len(per_image_classes) != len(per_image_target):
        raise InputError(f"{len(per_image_classes)} detection sets for {len(per_image_target)} targets")
    if not per_image_target:
        raise InputError("SOA: no images")
    n = np.zeros(len(SOA_CLASSES), dtype=np.int64)
    hit = np.zeros(len(SOA_CLASSES), dtype=np.int64)
    for found, target in zip(per_image_classes, per_image_target):
        t = int(target)
        if not 0 <= t < len(SOA_CLASSES):
            raise InputError(f"SOA target class {target} is outside 0..79")
        n[t] += 1
        hit[t] += int(t in {int(c) for c in found})
    present = n > 0
    acc = np.full(len(SOA_CLASSES), np.nan)
    acc[present] = 100.0 * hit[present] / n[present]
    table = pd.DataFrame(
        {
            "class_index": np.arange(len(SOA_CLASSES)),
            "class_key": [c.key for c in SOA_CLASSES],
            "name": [c.coco_name for c in SOA_CLASSES],
            "present": present,
            "n_images": n,
            "n_detected": hit,
            "acc": acc,
        }
    )
    soa_c = float(acc[present].mean())
    soa_i = float(100.0 * hit.sum() / n.sum())
    return soa_c, soa_i, table


def soa_metric_ids(detector: str | Path, conf: float) -> tuple[str, str]:
    """``(soa_c_<detector>_conf<t>, soa_i_<detector>_conf<t>)``."""
    d = detector_id(detector)
    return f"soa_c_{d}_conf{conf:g}", f"soa_i_{d}_conf{conf:g}"


# --------------------------------------------------------------------------------------------
# Accumulator
# --------------------------------------------------------------------------------------------


def _targets(batch: Batch) -> list[int]:
    n = batch.images.shape[0]
    classes = list(batch.soa_classes)
    missing = [i for i in range(n) if i >= len(classes) or not classes[i]]
    if missing:
        files = ", ".join(batch.files[i] for i in missing[:3] if i < len(batch.files))
        raise InputError(
            f"SOA: {len(missing)} images have no SOA class (e.g. {files}); generate the SOA split "
            "(lafitebench.data.soa.soa_split) and give a samples manifest with a 'soa_class' column"
        )
    return [soa_class(c).index for c in classes[:n]]


_DETECTORS: dict[tuple[str, float, str], Detector] = {}


def _loaded_detector(config: Any) -> Detector:
    """The detector of ``config`` (built once per spec, threshold and device in this process)."""
    conf = getattr(config, "detector_conf", None)
    conf = DEFAULT_DETECTOR_CONF if conf is None else float(conf)
    device = str(resolve_device(getattr(config, "device", "cpu")))
    key = (str(config.detector), conf, device)
    if key not in _DETECTORS:
        _DETECTORS.clear()  # one detector at a time
        _DETECTORS[key] = Detector(config.detector, conf=conf, device=device)
    return _DETECTORS[key]


class SoaMetric(Metric):
    """Streams images with their SOA class through a detector; ``compute()`` gives SOA-C/SOA-I.

    Uses ``config`` fields ``detector``, ``detector_conf``, ``device``, ``batch_size``; the
    detector is loaded on the first batch. States (gathered in sample order): each image's
    target class and the 80-way indicator of the classes detected in it.
    """

    name = "soa"
    higher_is_better = True

    def __init__(self, config: Any, context: Any = None) -> None:
        conf = getattr(config, "detector_conf", None)
        self.conf = DEFAULT_DETECTOR_CONF if conf is None else float(conf)
        check_detector_conf(self.conf)
        self.detector_spec = config.detector
        self._detector: Detector | None = None
        self._files: dict[int, str] = {}
        super().__init__(config, context)

    def setup(self) -> None:
        self.add_state("target", reduce="cat", row_shape=(), dtype=torch.int64)
        self.add_state("found", reduce="cat", row_shape=(len(SOA_CLASSES),), dtype=torch.uint8)

    @classmethod
    def check(cls, config: Any, samples: Any, reference: Any = None) -> None:
        """Cheap checks before expensive work: every sample has a known SOA class, the detector
        weights resolve (and its backend is installed), the threshold is valid.

        Raises:
            InputError: samples without/with unknown SOA classes, or a bad threshold.
            WeightsError: detector weights missing/corrupt or backend package missing.
        """
        items = list(getattr(samples, "items", []))
        missing = [it for it in items if not getattr(it, "soa_class", None)]
        if missing:
            shown = ", ".join(str(it.path) for it in missing[:3])
            what = f"{len(missing)} of {len(items)} images in {getattr(samples, 'name', 'samples')} have no SOA class"
            raise InputError(f"SOA: {what} (e.g. {shown}); give a samples manifest with a 'soa_class' column (see "
                             "soa_split)", short=f"SOA: {what}; give a samples manifest with a 'soa_class' column")
        for it in items:
            soa_class(it.soa_class)
        check_detector_conf(getattr(config, "detector_conf", DEFAULT_DETECTOR_CONF))
        resolve_detector(config.detector)
        _loaded_detector(config)  # builds it: a file that is not a COCO detector fails here, before any pass

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            self._detector = _loaded_detector(self.config)
        return self._detector

    def update(self, batch: Batch) -> None:
        """Detect objects in ``batch.images`` and record whether each image's class was found.

        Raises:
            InputError: an image without a (known) SOA class.
        """
        targets = _targets(batch)
        if not targets:
            return
        idx = self.indices_of(batch)
        bs = int(getattr(self.config, "batch_size", 0) or len(targets))
        found: list[set[int]] = []
        for s in range(0, len(targets), bs):
            found.extend(self.detector.detect(batch.images[s : s + bs]))
        onehot = torch.zeros(len(targets), len(SOA_CLASSES), dtype=torch.uint8)
        for i, f in enumerate(found):
            onehot[i, sorted(f)] = 1
        self.append("target", torch.tensor(targets, dtype=torch.int64), idx)
        self.append("found", onehot, idx)
        self._files.update(zip(idx, batch.files))

    def _detections(self) -> tuple[list[set[int]], list[int]]:
        found = [set(torch.nonzero(r).flatten().tolist()) for r in self.rows("found")]
        return found, self.rows("target").tolist()

    def per_image(self) -> pd.DataFrame:
        """index, file, class_key, detected (bool), classes found — one row per image, in sample order."""
        found, targets = self._detections()
        idx = self.row_index("target").tolist()
        return pd.DataFrame(
            {
                "index": idx,
                "file": [self._files.get(i) for i in idx],
                "class_key": [SOA_CLASSES[t].key for t in targets],
                "detected": [t in f for t, f in zip(targets, found)],
                "found": [sorted(f) for f in found],
            }
        )

    def provenance(self) -> dict[str, Any]:
        return self.detector.provenance()

    def compute(self) -> MetricOutput:
        """SOA-C and SOA-I (percent) with the per-class table, absent classes and detector provenance.

        Raises:
            InputError: no images were evaluated.
        """
        found, targets = self._detections()
        if not targets:
            raise InputError("SOA: no images were evaluated (empty sample set?)")
        soa_c, soa_i, table = soa_from_detections(found, targets)
        present = table[table.present]
        absent = table[~table.present]
        id_c, id_i = soa_metric_ids(self.detector_spec, self.conf)
        names = list(absent.name)
        absent_names = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "") or "none"
        denominator = f"SOA-C over {len(present)} of {len(SOA_CLASSES)} classes; absent: {absent_names}"
        det = self.detector.provenance()
        where = f"{det['detector']} conf>{self.conf:g}, NMS IoU {det['nms_iou']:g}, input {det['detector_input_size']}"
        n = int(table.n_images.sum())
        approx = "approximation of the official YOLOv3 protocol"
        rows = [
            MetricRow(id_c, "SOA-C", soa_c, n=n, notes=f"{where}; {denominator}; mean of per-class detection "
                                                         f"accuracy (%), {approx}"),
            MetricRow(id_i, "SOA-I", soa_i, n=n, notes=f"{where}; image-weighted accuracy (%) over {n} images in "
                                                         f"{len(present)} classes; {approx}"),
        ]
        details = {"soa_c": soa_c, "soa_i": soa_i, "n": n, "n_classes": int(len(present)),
                   "absent_classes": list(absent.class_key), "denominator": denominator, **det,
                   "notes": f"{SOA_NOTES} {denominator}."}
        self._ids = (id_c, id_i)
        return MetricOutput(rows=rows, tables={"soa_per_class": table}, details=details)

    def bootstrap(self, draws: list[Any]) -> dict[str, list[float]]:
        """SOA-C and SOA-I of each resampled set of images (their detections kept)."""
        found, targets = self._detections()
        out: dict[str, list[float]] = {self._ids[0]: [], self._ids[1]: []}
        for idx in draws:
            c, i, _ = soa_from_detections([found[j] for j in idx], [targets[j] for j in idx])
            out[self._ids[0]].append(c)
            out[self._ids[1]].append(i)
        return out
