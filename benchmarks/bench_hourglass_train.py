"""Training step speed of the default hourglass: forward + backward + SGD step, batch 16, 2 threads.

    python benchmarks/bench_hourglass_train.py [--batch 16] [--threads 2]

Prints images/s (the best of 4 timed steps after 2 warm-up steps). It was a test without an assertion
(tests/test_hourglass.py::test_training_speed_small_default); a measurement belongs here.
"""

from __future__ import annotations

import argparse
import time

import torch

from facelm.models import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = create_model("hourglass", 68).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.rand(a.batch, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 255.0
    times = []
    for i in range(6):
        t = time.perf_counter()
        ft = model.forward_train(x)
        loss = sum(h.square().mean() for h in ft["heatmaps"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    print(f"hourglass default: {a.batch / min(times):.1f} img/s train (batch {a.batch}, {a.threads} threads)")


if __name__ == "__main__":
    main()
