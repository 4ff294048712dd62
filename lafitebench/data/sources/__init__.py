"""One module per data source, each with a ``dataset(data_root, resolution, split, captions_file,
crop)`` factory registered by name in :mod:`lafitebench.data.registry`:

| name | module |
| --- | --- |
| ``coco``, ``coco-mini``, ``coco-mini:a``/``:b`` | :mod:`.coco` |
| ``cub`` | :mod:`.cub` |
| ``mm-celeba-hq`` | :mod:`.mm_celeba` |
| ``ln-coco`` | :mod:`.ln_coco` |
| ``cc3m`` | :mod:`.cc3m` |
| ``captioned-folder`` | :mod:`.captioned_folder` |
| ``official-zip`` | :mod:`.official_zip` |
| any folder or manifest | :mod:`.folder` |

A new source is one module here and one line in the registry.
"""
