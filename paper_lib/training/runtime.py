"""Where a training process runs: device (CUDA with bfloat16 autocast, else CPU), CPU threads,
and its rank under ``torchrun`` (DistributedDataParallel)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

@dataclass(frozen=True, kw_only=True)
class Runtime:
    """Where this process trains: device, autocast dtype (None = float32) and DDP rank."""

    device: torch.device
    amp_dtype: torch.dtype | None
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


def default_cpu_threads(local_world_size: int = 1) -> int:
    """Torch threads for this process: the cores it may use (shared among the local DDP ranks),
    less the cores other processes keep busy (1-minute load average, one unit assumed ours).

    More threads than free cores is far worse than fewer: OpenMP threads spin-wait on each
    other, and on a 2-core machine with a busy neighbour 2 threads trained 4–25× slower than 1.
    """
    cores = max(1, len(os.sched_getaffinity(0)) // max(1, local_world_size))
    busy_elsewhere = max(0.0, os.getloadavg()[0] - 1.0)
    return max(1, min(cores, int(len(os.sched_getaffinity(0)) - busy_elsewhere + 0.5)))


def setup_runtime(num_threads: int | None = None) -> Runtime:
    """Pick the device (CUDA + bf16 autocast, else CPU), set CPU threads, join DDP under torchrun.

    num_threads: CPU threads for torch; None = :func:`default_cpu_threads`, unless
    OMP_NUM_THREADS is set (then torch's choice is kept).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    else:
        device, amp_dtype = torch.device("cpu"), None
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    elif device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(default_cpu_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(device=device, amp_dtype=amp_dtype, rank=rank, world_size=world_size)
