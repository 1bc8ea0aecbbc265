"""Where a PyTorch bench peer runs (`--device cpu|cuda`), shared by embed_peer.py, retrieval_peer.py, train_peer.py
and finetune_peer.py; vlmdb writes it beside the peer it runs. torch is passed in, so a peer may import it late."""
import contextlib
import sys
import time


def select_device(torch, name, script):
    """The torch.device for --device NAME and its description for the report ("cpu", or "cuda: " and the GPU's
    name); exits with status 2 and one line on stderr when CUDA is asked for but unavailable."""
    if name != "cuda":
        return torch.device("cpu"), "cpu"
    if not torch.cuda.is_available():
        print(f"{script}: --device cuda was given but torch.cuda.is_available() is false (no CUDA GPU visible, or a "
              f"CPU-only torch build: torch {torch.__version__})", file=sys.stderr, flush=True)
        sys.exit(2)
    device = torch.device("cuda")
    return device, "cuda: " + torch.cuda.get_device_name(device)


def make_clock(torch, device):
    """time.perf_counter, after waiting for the GPU's queued work when the device is CUDA."""
    if device.type != "cuda":
        return time.perf_counter

    def clock():
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return clock


def make_autocast(torch, amp):
    """The context forward passes run under: bfloat16 autocast on CUDA (PyTorch AMP) when amp, else nothing."""
    if amp:
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext
