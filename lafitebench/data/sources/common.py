"""What several sources share: locating folders and split files, reading caption files, and
refusing options a source does not use."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import InputError
from ...io.files import read_text
from ...io.unpickle import restricted_load
from ..datasets import ImageSet, Item

MAX_NAMED = 5


def unused(name: str, **given: Any) -> None:
    """Refuse options a data set does not read (instead of ignoring them silently).

    Raises:
        InputError: naming the first option given and the data set.
    """
    for opt, value in given.items():
        if value is not None:
            raise InputError(f"data set {name!r}: {opt} does not apply to it (got {value!r}); drop it", param=opt)


def first_dir(root: Path, names: tuple[str, ...], what: str) -> Path:
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise InputError(f"{what} not found under {root}: expected one of {', '.join(n + '/' for n in names)}",
                     param="data_root")


def read_name_list(path: Path) -> list[str]:
    """Image names of a split file: ``filenames.pickle`` (a pickled list of str, read with the
    restricted unpickler) or ``filenames.txt`` (one per line)."""
    if path.suffix == ".pickle":
        data = restricted_load(path.read_bytes(), allowed={("builtins", "list"): list, ("builtins", "str"): str},
                               source=path, error=InputError, what="split files hold a list of image names")
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise InputError(f"split file {path} does not hold a list of image names")
        return data
    return [line.strip() for line in read_text(path, "split file").splitlines() if line.strip()]


def split_names(root: Path, split: str) -> list[str]:
    for name in ("filenames.pickle", "filenames.txt"):
        if (root / split / name).is_file():
            names = read_name_list(root / split / name)
            if not names:
                raise InputError(f"split file {root / split / name} lists no images")
            return names
    raise InputError(f"no split file for {split!r}: expected {root / split / 'filenames.pickle'} or "
                     f"{root / split / 'filenames.txt'}", param="split")


def caption_lines(path: Path) -> list[str]:
    caps = [" ".join(c.split()) for c in read_text(path, "caption file").splitlines() if c.strip()]
    if not caps:
        raise InputError(f"caption file {path} is empty")
    return caps


def find_image(folder: Path, name: str) -> Path | None:
    for ext in (".jpg", ".jpeg", ".png", ".webp"):
        p = folder / f"{name}{ext}"
        if p.is_file():
            return p
    return None


def captioned_items(image_dir: Path, text_dir: Path, names: list[str], what: str) -> list[Any]:
    items, missing = [], []
    for name in names:
        img = find_image(image_dir, name)
        txt = text_dir / f"{name}.txt"
        if img is None or not txt.is_file():
            missing.append(f"{name} ({'image' if img is None else 'captions'})")
            continue
        caps = caption_lines(txt)
        items.append(Item(path=img, caption=caps[0], captions=caps, meta={"name": name}))
    if missing:
        more = f" and {len(missing) - MAX_NAMED} more" if len(missing) > MAX_NAMED else ""
        raise InputError(f"{what}: {len(missing)} listed image(s) lack a file: {', '.join(missing[:MAX_NAMED])}{more}")
    return items


def require_root(data_root: Any, what: str) -> Path:
    if data_root is None:
        raise InputError(f"data set {what!r} needs its folder: pass data_root", param="data_root")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise InputError(f"data set {what!r}: folder {root} does not exist", param="data_root")
    return root


def split_folder_set(kind: str, data_root: Any, split: str | None, resolution: int, image_dirs: tuple[str, ...],
                     text_dirs: tuple[str, ...]):
    """CUB-200 / MM-CelebA-HQ style: images and per-image caption files, split files of names."""
    root = require_root(data_root, kind)
    split = split or "test"
    names = split_names(root, split)
    items = captioned_items(first_dir(root, image_dirs, "image folder"), first_dir(root, text_dirs, "caption folder"),
                             names, f"{kind} {split}")
    return ImageSet(items, f"{kind}:{split}", resolution, kind, "center", root, {"split": split})
