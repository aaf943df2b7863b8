"""Average the weights of several facelm checkpoints of one network ("model soup", Wortsman et al., ICML 2022).

Runs fine-tuned from the same weights (here: stage-2 refiners all warm-started from the shipped stage 1, with other
seeds, sampling weights or rotation ranges) usually lie in one basin, so the mean of their weights works as one model
and is often better than each of them, at no cost at inference. Say which runs went in and measure the result
(`facelm evaluate`) before using it.

    python scripts/average_checkpoints.py RUN_A/last.pt RUN_B/last.pt [...] -o soup.pt

The output is a facelm checkpoint (no optimiser state): the first input's metadata and config, the mean of every
weight tensor, ``soup`` listing the inputs and their steps. Inputs of another architecture, scheme, point count or
width stop it (exit 2), as do unreadable ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from facelm.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from facelm.errors import ModelError

SAME = ("arch", "num_landmarks", "width", "input_size")


def average(paths: list[Path]) -> dict:
    cks = [load_checkpoint(p) for p in paths]
    first = cks[0]
    for p, ck in zip(paths[1:], cks[1:]):
        for k in SAME:
            if ck["meta"].get(k) != first["meta"].get(k):
                raise ModelError(f"{p}: {k} {ck['meta'].get(k)!r} differs from {paths[0]}'s "
                                 f"{first['meta'].get(k)!r}")
        if ck["meta"]["scheme"].get("name") != first["meta"]["scheme"].get("name"):
            raise ModelError(f"{p}: scheme differs from {paths[0]}'s")
        if ck["model"].keys() != first["model"].keys():
            raise ModelError(f"{p}: weight names differ from {paths[0]}'s")
    out = dict(first)
    out["model"] = {k: torch.stack([ck["model"][k].float() for ck in cks]).mean(0).to(first["model"][k].dtype)
                    for k in first["model"]}
    out["optimizer"] = None
    out["soup"] = [{"checkpoint": str(p), "step": ck.get("step")} for p, ck in zip(paths, cks)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", help="facelm checkpoints (.pt) or run folders (best.pt)")
    ap.add_argument("-o", "--out", required=True, help="output checkpoint (.pt)")
    args = ap.parse_args(argv)
    if len(args.checkpoints) < 2:
        print("error: give at least two checkpoints to average", file=sys.stderr)
        return 2
    try:
        ck = average([resolve_checkpoint(p) for p in args.checkpoints])
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_checkpoint(ck, args.out)
    print(f"{args.out}: mean of {len(ck['soup'])} checkpoints", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
