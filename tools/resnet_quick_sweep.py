"""One ResNet-34 run from scratch at a given input size, epochs, batch and lr: how the quick demo plan's
ResNet-34 setting was chosen (benchmarks/README.md, "The main job"). Prints the run's wall seconds and
its per-epoch val accuracy.

    uv run python tools/resnet_quick_sweep.py CROPS_DIR SIZE BATCH EPOCHS LR
    uv run python tools/resnet_quick_sweep.py data/crops_synthetic_3a4b0fb7 48 32 3 1e-3
"""
from __future__ import annotations

import sys
import time

from engine.train import TrainConfig, fit


def main(argv: list[str]) -> None:
    crops, size, bs, ep, lr = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), float(argv[4])
    name = f"rn_{size}_{bs}_{ep}_{lr}"
    t = time.perf_counter()
    r = fit(TrainConfig(model="resnet34", crops_dir=crops, out_dir="/tmp/rn_sweep", graphs_dir="/tmp/rn_sweep_g",
                        run_name=name, epochs=ep, patience=0, hparams={"weights": None}, lr=lr,
                        scheduler="onecycle", batch_size=bs, image_size=size, progress=False, tensorboard=False))
    print("RESULT", name, f"{time.perf_counter() - t:.0f}s", "best val", r.best_val_acc,
          [round(h["val_acc"], 3) for h in r.history], flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
