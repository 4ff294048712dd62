"""CLIP score: ``100 · max(cos(E_img, E_txt), 0)`` per image-caption pair, averaged.

The clamp is applied to each pair (the usual definition, e.g. Hessel et al.'s CLIPScore with
w = 100); torchmetrics' ``CLIPScore`` instead clamps the mean, which differs whenever some
pair has a negative cosine. Captions longer than CLIP's 77 tokens are truncated (counted).
LAFITE is trained with a CLIP ViT-B/32 loss, so scoring it with ViT-B/32 flatters it: the
scorer backbone is part of the metric's id and another one can be chosen.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..data.batch import Batch
from ..encoders.clip import encode_images_uint8, encode_text, load_clip, resolve_clip_weights
from ..errors import InputError
from ..options import Cli, Options, option
from ..runtime.device import resolve_device
from .base import Metric, MetricOutput, MetricRow

CLIP_SCORE_NOTES = (
    "100*max(cos,0) per image-caption pair, then the mean (torchmetrics CLIPScore clamps the mean "
    "instead of each pair); std is the population std (ddof=0) of the per-pair scores; captions over "
    "77 tokens truncated (n_truncated); images preprocessed as tensors (antialiased bicubic resize of "
    "the shortest side, centre crop; matches open_clip's PIL path up to 1-2 uint8 levels on <0.5% of "
    "values). LAFITE is trained with a CLIP ViT-B/32 loss: a ViT-B/32 scorer is biased in its favour."
)


def clip_score_from_features(img_feats: torch.Tensor, txt_feats: torch.Tensor) -> torch.Tensor:
    """Per-pair CLIP scores ``100 * max(cos(img_i, txt_i), 0)`` in float64.

    Features need not be normalised (they are, here); shapes [N, D] and [N, D].

    Raises:
        InputError: shapes differ.
    """
    if img_feats.shape != txt_feats.shape or img_feats.ndim != 2:
        raise InputError(
            f"CLIP score needs one caption per image: image features {tuple(img_feats.shape)} vs "
            f"text features {tuple(txt_feats.shape)}"
        )
    a = torch.nn.functional.normalize(img_feats.double(), dim=-1)
    b = torch.nn.functional.normalize(txt_feats.double(), dim=-1)
    return 100.0 * (a * b).sum(dim=-1).clamp(min=0.0)


@dataclass
class ClipOptions(Options):
    """The CLIP scorer: an open_clip model and its weights (a pretrained tag or a local file)."""

    PANEL = "CLIP score"

    clip_model: str = option("ViT-B-32", "open_clip model name of the CLIP scorer.", cli=Cli("--clip-model", metavar="NAME"))
    clip_pretrained: str | None = option("openai", "open_clip pretrained tag.", cli=Cli("--clip-pretrained", metavar="TAG"))
    clip_weights: str | None = option(None, "Local CLIP weights file for --clip-model.",
                                      cli=Cli("--clip-weights", metavar="PATH"))


def clip_metric_id(model: str, pretrained: str | None, weights_sha256: str | None = None) -> str:
    """``clip_score_<model>_<tag>`` (or ``..._file-<sha8>`` for an untagged weights file)."""
    tag = pretrained or (f"file-{weights_sha256[:8]}" if weights_sha256 else "random")
    return f"clip_score_{model}_{tag}"


def _missing_captions(captions: Sequence[str | None], n: int) -> list[int]:
    if len(captions) != n:
        return list(range(n))
    return [i for i, c in enumerate(captions) if not isinstance(c, str) or not c.strip()]


_CAPTION_HELP = (
    "give the samples' captions: a manifest with a 'caption' column, or a captions file "
    "(captions_file), one caption per image"
)


class ClipScoreMetric(Metric):
    """Streams (image, caption) batches through a CLIP model; ``compute()`` gives the mean score.

    Uses ``config`` fields ``clip_model``, ``clip_pretrained``, ``clip_weights``, ``device``,
    ``batch_size``, ``resolution``; the CLIP model is loaded on the first batch. State: the
    per-pair scores (gathered in sample order) and the count of truncated captions (summed).
    """

    name = "clip"
    higher_is_better = True

    def __init__(self, config: Any, context: Any = None, *, allow_random: bool = False) -> None:
        self._allow_random = allow_random
        self._model = self._tokenizer = None
        self.info: dict[str, Any] | None = None
        self._files: dict[int, str] = {}
        super().__init__(config, context)

    def setup(self) -> None:
        self.add_state("scores", reduce="cat", row_shape=(), dtype=torch.float64)
        self.add_state("n_truncated", torch.zeros((), dtype=torch.int64))

    @classmethod
    def check(cls, config: Any, samples: Any, reference: Any = None) -> None:
        """Cheap checks before expensive work: every sample has a caption, the CLIP weights resolve.

        Raises:
            InputError: samples without captions (names them and how to provide captions), or an
                unknown CLIP model name.
            WeightsError: the CLIP weights cannot be found (offline) or have the wrong hash.
        """
        items = list(getattr(samples, "items", []))
        missing = [it for it in items if not isinstance(getattr(it, "caption", None), str) or not it.caption.strip()]
        if missing:
            shown = ", ".join(str(it.path) for it in missing[:3])
            what = f"{len(missing)} of {len(items)} images in {getattr(samples, 'name', 'samples')} have no caption"
            raise InputError(f"CLIP score: {what} (e.g. {shown}); {_CAPTION_HELP}", short=f"CLIP score: {what}")
        resolve_clip_weights(config.clip_model, config.clip_pretrained, config.clip_weights)

    def _ensure_model(self) -> None:
        if self._model is None:
            cfg = self.config
            self._model, _, self._tokenizer, self.info = load_clip(
                cfg.clip_model, cfg.clip_pretrained, cfg.clip_weights, resolve_device(cfg.device),
                allow_random=self._allow_random,
            )

    def update(self, batch: Batch) -> None:
        """Score every (image, caption) pair of ``batch``.

        Raises:
            InputError: a missing caption (names the file and how to give captions).
        """
        n = batch.images.shape[0]
        missing = _missing_captions(batch.captions, n)
        if missing:
            files = ", ".join(batch.files[i] for i in missing[:3] if i < len(batch.files))
            raise InputError(f"CLIP score: {len(missing)} images without a caption (e.g. {files}); {_CAPTION_HELP}")
        if n == 0:
            return
        idx = self.indices_of(batch)
        self._ensure_model()
        bs = int(getattr(self.config, "batch_size", 0) or n)
        img = encode_images_uint8(self._model, self.info["preprocess"], batch.images, batch_size=bs)
        txt, n_trunc = encode_text(self._model, self._tokenizer, list(batch.captions), batch_size=bs)
        self.append("scores", clip_score_from_features(img, txt), idx)
        self.add("n_truncated", torch.tensor(n_trunc))
        self._files.update(zip(idx, batch.files))

    def per_image(self):
        """pandas DataFrame (index, file, clip_score) of every pair this process scored, in sample order."""
        import pandas as pd

        idx = self.row_index("scores").tolist()
        return pd.DataFrame({"index": idx, "file": [self._files.get(i) for i in idx],
                             "clip_score": self.rows("scores").numpy()})

    def provenance(self) -> dict[str, Any]:
        info = self.info or {}
        return {"model": info.get("model"), "pretrained": info.get("pretrained"),
                "weights_sha256": info.get("weights_sha256"), "weights_source": info.get("weights_source"),
                "weights_verified": info.get("weights_verified"),
                "resolution": getattr(self.config, "resolution", None),
                "preprocess": {k: (list(v) if isinstance(v, tuple) else v) for k, v in info.get("preprocess", {}).items()}}

    def compute(self) -> MetricOutput:
        """Mean per-pair score and its provenance.

        Raises:
            InputError: nothing was scored.
        """
        s = self.rows("scores").numpy()
        if not s.size:
            raise InputError("CLIP score: no images were scored (empty sample set?)")
        if self.info is None:  # this process scored no batch (more processes than batches)
            self._ensure_model()
        info = self.info or {}
        notes = CLIP_SCORE_NOTES + (" RANDOM CLIP WEIGHTS (test only)." if info.get("random_init") else "")
        row = MetricRow(clip_metric_id(info.get("model"), info.get("pretrained"), info.get("weights_sha256")),
                        "CLIP score", float(s.mean()), float(s.std(ddof=0)), int(s.size), True, notes)
        self._id = row.id
        details = {"clip_score": float(s.mean()), "std": float(s.std(ddof=0)), "n": int(s.size),
                   "n_truncated": int(self.value("n_truncated")), **self.provenance()}
        return MetricOutput(rows=[row], details=details)

    def bootstrap(self, draws: list[Any]) -> dict[str, list[float]]:
        """The mean of each resampled set of per-pair scores."""
        s = self.rows("scores").numpy()
        return {self._id: [float(s[idx].mean()) for idx in draws]}
