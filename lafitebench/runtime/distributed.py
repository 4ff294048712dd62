"""``torch.distributed`` for evaluation, generation and training: set-up, sharding, reductions.

Started by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` in the
environment), :func:`init` joins the process group (NCCL on CUDA, gloo on CPU). On one process
every helper here is a no-op, so the same code runs with and without torchrun.

Conventions used by every job:

- work is split into **batches**, and rank ``r`` of ``W`` takes batches ``r, r+W, r+2W, ...``
  (:func:`shard_batches`); each batch is then the same as in a single-process run, so per-image
  numbers do not depend on the world size;
- float64 sums are all-reduced (:func:`all_reduce_sum`);
- per-sample rows are gathered with their sample indices and put back in index order
  (:func:`gather_rows`), so order-dependent metrics (IS splits, KID subsets) see the
  single-process order;
- rank 0 alone reads/writes caches and results; the others wait on :func:`barrier`.
"""
from __future__ import annotations

import datetime as _dt
import os
from contextlib import contextmanager
from typing import Any, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

_STARTED_HERE = False


def is_torchrun() -> bool:
    """True when the environment says this process is one rank of several (torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init(device: torch.device | None = None) -> None:
    """Join the process group torchrun described (idempotent; nothing to do on one process).

    The backend is NCCL when ``device`` is CUDA, else gloo. On CUDA the rank's GPU
    (``LOCAL_RANK``) becomes the current device.
    """
    global _STARTED_HERE
    if not is_torchrun() or dist.is_initialized():
        return
    backend = "nccl" if (device is not None and device.type == "cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend, timeout=_dt.timedelta(minutes=60))
    _STARTED_HERE = True


def shutdown() -> None:
    """Leave the process group if :func:`init` joined it."""
    global _STARTED_HERE
    if _STARTED_HERE and dist.is_initialized():
        dist.destroy_process_group()
    _STARTED_HERE = False


def active() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 on one process)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """Number of processes (1 without torchrun)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """True on rank 0 (the rank that reads/writes caches and results, and prints)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op on one process)."""
    if active():
        dist.barrier()


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def shard_batches(batches: Sequence[T]) -> list[T]:
    """The batches this rank works on: ``batches[rank::world_size]``."""
    return list(batches[rank()::world_size()])


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over all ranks (a new tensor, same dtype and device as ``t``)."""
    if not active():
        return t.clone()
    buf = t.detach().to(_comm_device()).clone()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(t.device)


def _all_gather_padded(t: torch.Tensor) -> list[torch.Tensor]:
    """``t`` from every rank (first dimension may differ between ranks)."""
    dev = _comm_device()
    n = torch.tensor([t.shape[0]], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    sizes_i = [int(s.item()) for s in sizes]
    pad = max(sizes_i)
    buf = torch.zeros((pad, *t.shape[1:]), dtype=t.dtype, device=dev)
    buf[: t.shape[0]] = t.to(dev)
    out = [torch.zeros_like(buf) for _ in range(world_size())]
    dist.all_gather(out, buf)
    return [o[:s].to(t.device) for o, s in zip(out, sizes_i)]


def gather_rows(rows: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows from every rank, concatenated and sorted by their sample ``index`` ([N] int64).

    Returns ``(rows, index)`` in ascending index order (on one process: ``rows`` sorted by
    ``index``). Indices must be unique across ranks.
    """
    if active():
        rows = torch.cat(_all_gather_padded(rows))
        index = torch.cat(_all_gather_padded(index))
    order = torch.argsort(index, stable=True)
    return rows[order], index[order]


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (in-memory objects of this process group only)."""
    if not active():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_ranks_ok(ok: bool) -> bool:
    """True when ``ok`` is True on every rank (lets all ranks fail together, not hang)."""
    if not active():
        return ok
    flag = torch.tensor([0 if ok else 1], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(flag, op=dist.ReduceOp.SUM)
    return int(flag.item()) == 0


@contextmanager
def main_first() -> Iterator[bool]:
    """Run a block on rank 0 first (e.g. to fill a cache), then on the others; yields ``is_main()``."""
    if not is_main():
        barrier()
    try:
        yield is_main()
    finally:
        if is_main():
            barrier()


def describe() -> dict[str, Any]:
    """Provenance of the process layout: world size, backend, this rank."""
    return {"world_size": world_size(), "rank": rank(),
            "backend": dist.get_backend() if active() else None,
            "launcher": "torchrun" if is_torchrun() else None}


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` from every rank, in rank order (``[obj]`` on one process)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
