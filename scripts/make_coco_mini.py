#!/usr/bin/env python
"""Build the bundled ``lafitebench/data/coco_mini/`` from real COCO 2017 val images.

Selection: the image files of ``--images`` (default ``<shared>/assets/coco/coco_mini/val2017``)
sorted by COCO id, leaving out images under a Creative Commons *NoDerivs* license (a centre
crop + resize is a derivative, which those licenses do not allow to be shared), first ``--n``
(100). Each image: centre crop to a square + PIL LANCZOS to 256², RGB, saved as JPEG quality 90
with 4:4:4 chroma (no subsampling) and optimised Huffman tables. ``captions.json`` records per
image the file, COCO id, its 5 captions, its license (name + URL), Flickr and COCO URLs,
original size and sha256 of the source and bundled files. ``README.md`` states provenance
and licenses.

Usage: python scripts/make_coco_mini.py [--images DIR] [--captions FILE] [--out DIR] [--n 100]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from lafitebench.data.images import center_crop_resize, open_rgb  # noqa: E402
from lafitebench.io.files import atomic_write, write_json_atomic  # noqa: E402

RESOLUTION = 256
JPEG_OPTIONS = {"quality": 90, "subsampling": 0, "optimize": True}
PREPROCESSING = (
    "centre crop to the largest square ((W-s)//2, (H-s)//2, s=min(W,H)), PIL LANCZOS resize to 256x256, "
    "RGB, JPEG quality 90, 4:4:4 chroma, optimised Huffman tables"
)


def _shared() -> Path:
    env = os.environ.get("LAFITEBENCH_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def build(images: Path, captions: Path, out: Path, n: int) -> dict:
    import json

    ann = json.loads(captions.read_text(encoding="utf-8"))
    licenses = {lic["id"]: {"id": lic["id"], "name": lic["name"], "url": lic["url"]} for lic in ann["licenses"]}
    by_name = {im["file_name"]: im for im in ann["images"]}
    caps: dict[int, list[tuple[int, str]]] = {}
    for a in ann["annotations"]:
        caps.setdefault(a["image_id"], []).append((a["id"], a["caption"].strip()))

    files = sorted((p for p in images.iterdir() if p.suffix.lower() == ".jpg"), key=lambda p: by_name[p.name]["id"])
    chosen, excluded = [], []
    for p in files:
        im = by_name[p.name]
        if "NoDerivs" in licenses[im["license"]]["name"]:
            excluded.append(im["id"])
            continue
        chosen.append(p)
        if len(chosen) == n:
            break
    if len(chosen) < n:
        raise SystemExit(f"only {len(chosen)} usable images in {images}, need {n}")

    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for old in img_dir.glob("*.jpg"):
        old.unlink()
    records = []
    for p in chosen:
        im = by_name[p.name]
        rgb = center_crop_resize(open_rgb(p), RESOLUTION)
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", **JPEG_OPTIONS)
        data = buf.getvalue()
        target = img_dir / f"{im['id']:012d}.jpg"
        with atomic_write(target) as fh:
            fh.write(data)
        c = [t for _, t in sorted(caps[im["id"]])]
        records.append({
            "file": f"images/{target.name}",
            "image_id": im["id"],
            "captions": c,
            "license": licenses[im["license"]],
            "flickr_url": im.get("flickr_url"),
            "coco_url": im.get("coco_url"),
            "original_size": [im["width"], im["height"]],
            "source_sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            "sha256": hashlib.sha256(data).hexdigest(),
        })
    meta = {
        "info": {
            "name": "coco-mini",
            "source": "MS-COCO 2017 validation images (cocodataset.org) with the official captions_val2017.json",
            "selection": (
                f"the first {n} images by COCO id among those available, leaving out images under "
                "CC NoDerivs licenses"
            ),
            "excluded_noderivs_image_ids": excluded,
            "preprocessing": PREPROCESSING,
            "resolution": RESOLUTION,
            "n": len(records),
            "annotations_license": "CC BY 4.0 (COCO Consortium)",
            "images_license": "per image: the Flickr license in 'license' (from the COCO json)",
            "made_by": "scripts/make_coco_mini.py",
            "pillow": Image.__version__,
        },
        "licenses": sorted({r["license"]["id"]: r["license"] for r in records}.values(), key=lambda x: x["id"]),
        "images": records,
    }
    write_json_atomic(out / "captions.json", meta)
    _write_readme(out, meta)
    return meta


def _write_readme(out: Path, meta: dict) -> None:
    recs = meta["images"]
    total = sum((out / r["file"]).stat().st_size for r in recs)
    counts: dict[str, int] = {}
    for r in recs:
        key = f"[{r['license']['name']}]({r['license']['url']})"
        counts[key] = counts.get(key, 0) + 1
    lic_rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    text = f"""# coco-mini (bundled data)

{len(recs)} real MS-COCO 2017 **validation** images at 256×256 with their 5 reference captions,
so that `lafitebench` can run its quickstart and tests with no download
(`get_dataset("coco-mini")`; `coco-mini:a` / `coco-mini:b` are the first / last 50).
Too few images for FID numbers comparable with papers (FID needs thousands); use it to
check that the pipeline runs, not to report results.

## Provenance

- Images: COCO 2017 val (<https://cocodataset.org>), originally from Flickr. Selection:
  {meta["info"]["selection"]} (left out: COCO ids {", ".join(map(str, meta["info"]["excluded_noderivs_image_ids"]))}).
- Preprocessing: {PREPROCESSING}. Made by `scripts/make_coco_mini.py` with Pillow
  {meta["info"]["pillow"]}. These JPEG files are re-encoded, so they are close to but not
  pixel-identical with the same images read from COCO through the `coco` dataset.
- Captions: the official `captions_val2017.json`, all captions of each image in annotation-id order.
- `captions.json`: per image `file`, `image_id`, `captions`, `license` (name, URL),
  `flickr_url`, `coco_url`, `original_size`, `source_sha256` (original COCO file) and `sha256`
  (bundled file).
- Size: {total:,} bytes of images.

## Licenses

- COCO annotations (the captions): Creative Commons Attribution 4.0 (CC BY 4.0), © COCO Consortium.
- Each image keeps the Flickr license COCO lists for it (in `captions.json`, with the photo's
  Flickr URL for attribution). The images here are adaptations (cropped, resized, re-encoded);
  ShareAlike images are shared under their same license, and NonCommercial images may not be
  used commercially. The MIT license of lafitebench's code does not apply to this folder.

| license | images |
| --- | --- |
{lic_rows}
"""
    with atomic_write(out / "README.md") as fh:
        fh.write(text.encode("utf-8"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sh = _shared()
    ap.add_argument("--images", type=Path, default=sh / "assets/coco/coco_mini/val2017")
    ap.add_argument("--captions", type=Path, default=sh / "assets/coco/captions_val2017.json")
    ap.add_argument("--out", type=Path, default=REPO / "lafitebench/data/coco_mini")
    ap.add_argument("--n", type=int, default=100)
    a = ap.parse_args()
    meta = build(a.images, a.captions, a.out, a.n)
    total = sum((a.out / r["file"]).stat().st_size for r in meta["images"])
    print(f"wrote {len(meta['images'])} images ({total:,} bytes) and captions.json to {a.out}")


if __name__ == "__main__":
    main()
