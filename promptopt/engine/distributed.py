"""Data parallelism for the engine, over ``torch.distributed`` as set up by Hugging Face Accelerate.

Launch any command with ``torchrun --nproc_per_node N`` or ``accelerate launch --num_processes N``: every process
runs the same command on its own device, holding the frozen model and the prompt parameters. The engine then

- shards each global training batch across the processes and all-reduces only the trainable gradients
  (:func:`promptopt.engine.train.fit`), so the optimizer state and the prompt stay identical everywhere;
- shards evaluation batches and gathers the rows, so every process sees the single-process metrics
  (:meth:`promptopt.engine.scoring.Scorer.evaluate`), and candidate losses computed without gradients
  (:meth:`~promptopt.engine.scoring.Scorer.losses`);
- writes files on the main process only (:mod:`promptopt.data.files`).

Without a launcher (``WORLD_SIZE`` unset or 1) every function here is the identity, at no cost. Inside
:func:`local` the process works alone (no collective, writes its own files): the leaderboard uses it to run whole
runs, one per process.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os

import torch

_alone = contextvars.ContextVar("promptopt_distributed_alone", default=False)


def init() -> bool:
    """Join the process group a launcher describes (``WORLD_SIZE`` > 1), through Accelerate's ``PartialState``
    (NCCL on CUDA, gloo on CPU). Returns whether a process group is up."""
    import torch.distributed as dist

    if not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available())
    if dist.is_initialized():
        atexit.register(_shutdown)
    return dist.is_initialized()


def _shutdown() -> None:
    """Take the process groups down before the interpreter does: a gloo group left to the C++ destructors at exit
    can abort the process (``terminate called without an active exception``) after its work is done."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _group_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if init() else 1


def world_size() -> int:
    """Processes sharing the work now (1 without a launcher, or inside :func:`local`)."""
    return 1 if _alone.get() else _group_size()


def rank() -> int:
    import torch.distributed as dist

    return 0 if world_size() == 1 else dist.get_rank()


def launch_rank() -> tuple[int, int]:
    """``(rank, world size)`` of the launch, also inside :func:`local` (the leaderboard deals runs by it)."""
    import torch.distributed as dist

    return (dist.get_rank(), dist.get_world_size()) if init() else (0, 1)


def is_main() -> bool:
    """Whether this process writes files: the only process, or rank 0 of a data-parallel group."""
    return rank() == 0


def device() -> torch.device | None:
    """This process's CUDA device under a launcher (``LOCAL_RANK``), else None (the caller picks)."""
    if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
    return None


@contextlib.contextmanager
def local():
    """Within this block the process works alone: no collective, and it writes its own files."""
    token = _alone.set(True)
    try:
        yield
    finally:
        _alone.reset(token)


def shard(n: int) -> range:
    """This process's contiguous part of ``range(n)``; the parts of all processes cover it once, in order."""
    w, r = world_size(), rank()
    return range(r * n // w, (r + 1) * n // w)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the processes, in place (and returned)."""
    if world_size() > 1:
        import torch.distributed as dist

        if dist.get_backend() == "nccl" and tensor.device.type != "cuda":  # NCCL reduces CUDA tensors only
            on_gpu = tensor.to(device() or torch.device("cuda"))
            dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
            return tensor.copy_(on_gpu)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_grads(parameters: list[torch.nn.Parameter]) -> None:
    """Sum the gradients of ``parameters`` over the processes, in one flat all-reduce (a missing grad counts 0)."""
    if world_size() == 1:
        return
    for p in parameters:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in parameters])
    all_reduce_sum(flat)
    offset = 0
    for p in parameters:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def gather(obj, group=None) -> list:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` alone. ``group``: from :func:`patient_group`."""
    import torch.distributed as dist

    if group is None and world_size() == 1:
        return [obj]
    out: list = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, obj, group=group)
    return out


def patient_group(days: float = 30):
    """A gloo group over the whole launch whose collectives wait up to ``days`` (the default group gives up after
    minutes): for meeting again after independent work of any length, e.g. the leaderboard's runs. Every process
    of the launch must call it; None without a launch."""
    import datetime

    import torch.distributed as dist

    if not init():
        return None
    return dist.new_group(backend="gloo", timeout=datetime.timedelta(days=days))


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()
