"""The SOA object detector: an ultralytics COCO detector returning, per image, the detected classes.

The official SOA detector is darknet YOLOv3 at 256×256 with objectness ≥ 0.5 and NMS IoU 0.4.
Ultralytics detectors have no objectness: the threshold here is ultralytics' class confidence
(``conf > detector_conf``, default 0.5), NMS IoU 0.4 per class, input 256 (for ``.pt`` models;
exports with a fixed input size use theirs).

Before ultralytics is first imported, this module sets (unless already set): ``YOLO_AUTOINSTALL=false``
(no silent pip installs), ``ULTRALYTICS_SAFE_LOAD=1`` (``.pt`` files load with ``weights_only``
and ultralytics' allow-list) and, when lafitebench is offline, ``YOLO_OFFLINE=1``; ultralytics'
log lines are moved from stdout to stderr so JSON on stdout stays clean.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

from .. import settings
from ..assets import weights as weights_mod
from ..errors import InputError, WeightsError
from ..io.state_dict import torch_load_reason

# COCO's 80 category names in contiguous-index order (= ultralytics COCO ``names``, = coco.names order).
COCO80_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)

SOA_NMS_IOU = 0.4  # official (SOA's YOLOv3 evaluation)
SOA_DETECTOR_SIZE = 256  # official: images resized to 256x256 for the detector
DEFAULT_DETECTOR_CONF = 0.5  # mirrors objectness >= 0.5 (an approximation, see module docstring)


def check_detector_conf(conf: float) -> float:
    """The detection confidence threshold as a float in (0, 1); InputError (``detector_conf``) otherwise."""
    try:
        value = float(conf)
    except (TypeError, ValueError):
        raise InputError(f"detector_conf must be a number in (0, 1), got {conf!r}", param="detector_conf") from None
    if not 0.0 < value < 1.0:
        raise InputError(f"detector_conf must be in (0, 1) (exclusive), got {conf}", param="detector_conf")
    return value


def _import_ultralytics():
    """Import ultralytics with safe defaults (see module docstring); return the ``YOLO`` class."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")  # no settings banner or per-call log lines
    os.environ.setdefault("ULTRALYTICS_SAFE_LOAD", "1")
    if settings.offline():
        os.environ.setdefault("YOLO_OFFLINE", "1")
    from PIL import Image

    pil_open = Image.open
    from ultralytics import YOLO

    # ultralytics replaces PIL.Image.open by a version that, on an unidentified file, tries to
    # pip-install and import a HEIF plugin; put Pillow's own back so a bad image stays a bad image.
    Image.open = pil_open
    from ultralytics.utils import LOGGER

    for h in LOGGER.handlers:
        if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stdout:
            h.setStream(sys.stderr)
    return YOLO


def detector_id(spec: str | Path) -> str:
    """Short detector name for metric ids: ``yolov8n.pt`` → ``yolov8n``,
    ``yolov8n_int8_openvino_model/`` → ``yolov8n-int8-openvino``."""
    name = Path(str(spec).rstrip("/")).name
    for suffix in (".pt", ".onnx", ".engine", ".torchscript"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith("_model"):
        name = name[: -len("_model")]
    return name.replace("_", "-").lower()


# --------------------------------------------------------------------------------------------
# Detector
# --------------------------------------------------------------------------------------------


class Detector:
    """An ultralytics COCO detector returning, per image, the set of detected class ids.

    ``spec`` is a weights name (``yolov8n.pt``, resolved by ``lafitebench.assets.weights.resolve``), a
    ``.pt`` file, or an exported model folder (e.g. ``*_openvino_model``, needs ``openvino``).
    The detector's 80 class names must be COCO's, in COCO order.

    Raises:
        WeightsError: weights missing/corrupt, a ``.pt`` outside ultralytics' safe-load allow-list,
            a backend package missing, or a detector whose classes are not COCO's 80.
        InputError: a confidence threshold outside (0, 1).
    """

    def __init__(
        self, spec: str | Path, conf: float = DEFAULT_DETECTOR_CONF, iou: float = SOA_NMS_IOU,
        imgsz: int = SOA_DETECTOR_SIZE, device: str | torch.device = "cpu",
    ) -> None:
        check_detector_conf(conf)
        self.conf, self.iou, self.requested_imgsz = float(conf), float(iou), int(imgsz)
        self.device = str(device)
        self.resolved = resolve_detector(spec)
        path = Path(self.resolved.path)
        yolo_cls = _import_ultralytics()
        if path.suffix == ".pt":
            _check_pt_safe(path)
        try:
            self.model = yolo_cls(str(path), task="detect")
        except Exception as exc:  # a broken or foreign model file fails in many ways inside ultralytics
            raise WeightsError(
                f"could not load detector {path}: {type(exc).__name__}: {str(exc)[:200]}. Use an official ultralytics "
                "COCO detector (e.g. yolov8n.pt) or an exported model folder", param="detector"
            ) from None
        names = getattr(self.model, "names", None) or {}
        got = tuple(names[i] for i in sorted(names)) if isinstance(names, dict) else tuple(names)
        if got != COCO80_NAMES:
            raise WeightsError(
                f"detector {path} does not have COCO's 80 classes in COCO order (got {len(got)} classes: "
                f"{', '.join(map(str, got[:5]))}, ...); SOA needs a COCO-trained detector"
            )
        self.is_pt = path.suffix == ".pt"
        self.name = detector_id(spec)
        self.imgsz: Any = None  # the input size ultralytics actually used (known after the first call)

    def detect(self, images_uint8: torch.Tensor) -> list[set[int]]:
        """Detected COCO class ids for each uint8 RGB NCHW image.

        Images go to ultralytics as BGR HWC numpy arrays (its convention for arrays, the same
        path as image files read with OpenCV); it letterboxes them to the detector's input size.
        """
        if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4 or images_uint8.shape[1] != 3:
            raise InputError(f"detector input must be uint8 [N,3,H,W] RGB, got {images_uint8.dtype} {tuple(images_uint8.shape)}")
        if images_uint8.shape[0] == 0:
            return []
        bgr = images_uint8.flip(1).permute(0, 2, 3, 1).contiguous().cpu().numpy()
        kwargs: dict[str, Any] = dict(conf=self.conf, iou=self.iou, verbose=False, max_det=300)
        if self.is_pt:
            kwargs.update(imgsz=self.requested_imgsz, device=self.device)
        results = self.model.predict(list(bgr), **kwargs)
        if self.imgsz is None and getattr(self.model, "predictor", None) is not None:
            size = self.model.predictor.imgsz
            self.imgsz = list(size) if isinstance(size, (list, tuple)) else size
        return [set(int(c) for c in r.boxes.cls.tolist()) for r in results]

    def provenance(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "detector_path": str(self.resolved.path),
            "detector_sha256": self.resolved.sha256,
            "detector_verified": bool(self.resolved.verified),
            "detector_conf": self.conf,
            "nms_iou": self.iou,
            "detector_input_size": self.imgsz if self.imgsz is not None else self.requested_imgsz,
            "detector_input_size_requested": self.requested_imgsz,
        }


def _check_pt_safe(path: Path) -> None:
    """Refuse a ``.pt`` that needs anything outside ultralytics' weights-only allow-list (whatever
    ``ULTRALYTICS_SAFE_LOAD`` was when ultralytics was imported): nothing in it gets to run."""
    from ultralytics.nn.tasks import _SafeLoad, torch_safe_load

    if not _SafeLoad.SUPPORTED:
        raise WeightsError(f"cannot load {path} safely: restricted ultralytics loading needs torch >= 2.6")
    try:
        torch_safe_load(str(path), safe_only=True)
    except Exception as exc:  # corrupt or unsafe: torch and ultralytics raise many types
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) if zipfile.is_zipfile(path) else []
        except Exception:  # noqa: BLE001 - the listing is a courtesy; the file is refused either way
            unsafe = []
        raise WeightsError(
            f"refusing detector file {path}: not a checkpoint ultralytics can load without running code from it "
            f"({torch_load_reason(exc)}){'; it references ' + ', '.join(unsafe[:5]) if unsafe else ''}",
            param="detector") from None


#: Detector formats SOA accepts: what the file or folder looks like → the package its backend needs.
DETECTOR_FORMATS = {".pt": None, ".onnx": "onnxruntime", "_openvino_model/": "openvino"}


def resolve_detector(spec: str | Path, *, deep: bool = True):
    """``ResolvedWeights`` of a detector name/file/folder (a folder export is hashed as a tree),
    with its format checked before any image is read.

    ``deep`` also opens a ``.pt`` file with ultralytics' weights-only loader (nothing in it runs).

    Raises:
        WeightsError (``param="detector"``): missing or corrupt weights; a format SOA does not take
            (``.pth``, no suffix, a plain folder); a backend package missing (``openvino``,
            ``onnxruntime``); a ``.pt`` that needs code to load.
    """

    if spec is None or str(spec) == "":
        raise WeightsError("no detector given, e.g. 'yolov8n.pt' or an exported model folder", param="detector")
    resolved = weights_mod.resolve(str(spec))
    path = Path(resolved.path)
    kind = "_openvino_model/" if (path.is_dir() and path.name.endswith("_openvino_model")) else \
        (path.suffix.lower() if path.is_file() else None)
    if kind not in DETECTOR_FORMATS:
        raise WeightsError(
            f"detector {path}: unsupported format; SOA takes an ultralytics COCO detector as a .pt file, an "
            "ONNX export (.onnx, needs onnxruntime) or an OpenVINO export folder (*_openvino_model/)", param="detector")
    package = DETECTOR_FORMATS[kind]
    if package and importlib.util.find_spec(package) is None:
        raise WeightsError(f"detector {path} needs the '{package}' package (pip install {package})", param="detector")
    if deep and kind == ".pt":
        _import_ultralytics()
        _check_pt_safe(path)
    return resolved


