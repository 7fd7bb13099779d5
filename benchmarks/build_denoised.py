"""Build the bundled denoised-smoothing family experts/fashion-mnist/denoised/ (Carlini et al.).

    python benchmarks/build_denoised.py [--out experts/fashion-mnist/denoised]
        [--epochs-denoiser 20] [--epochs-classifier 10] [--device cpu] [--threads 1]

Two parts, both trained here on the Fashion-MNIST "train" split (the validation hold-out stays
unseen): a small DDPM denoiser (diffusers UNet2DModel, rsrouter.training.denoiser.train_denoiser) in
``OUT/denoiser/`` and a clean cnn_small (plain cross-entropy, no noise) whose card is ``OUT``
(kind "denoised", sigmas 0.25 / 0.5 / 1.0, the denoiser pinned file by file). Rerunning skips
finished parts and resumes interrupted ones (checkpoints under ``.train/``). The card records
one-draw noisy accuracy on the first validation images (not a certificate); the script ends by
printing the throughput of the expert at sigma 0.5 (noisy forwards/s, batch 2500, fp32).
Certified accuracy comes from a benchmark (configs/bench-fashion-mnist-dualrs.yaml).

Measured here (2-core CPU shared with another job, one thread): a denoiser epoch on the 55,000
training images takes about 2.2 minutes, a classifier epoch about 30 s; the expert runs at about
800 noisy forwards/s (about 1,300/s under torch.compile, after a 4-minute compile). Two OpenMP
threads that contend with another process are many times slower than one, hence
``--threads 1`` by default; run single-thread shards to use more cores.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rsrouter.cards.denoiser import denoiser_block, read_denoiser
from rsrouter.cards.expert import ExpertCard, read_card
from rsrouter.cards.pins import CONFIG_FILE, read_artifact
from rsrouter.certify.noise import noise_generator
from rsrouter.data import TensorImageDataset, load_dataset
from rsrouter.errors import ResumeError
from rsrouter.files import FileLock, tensors_from_bytes
from rsrouter.models import create_classifier
from rsrouter.registry.denoised import DenoisedClassifier, DenoiserParts, build_parts
from rsrouter.registry.weights import save_expert
from rsrouter.training.denoiser import TRAINING_FILE, DenoiserTrainConfig, train_denoiser
from rsrouter.training.fit import CHECKPOINT, cosine_lr, fit

ROOT = Path(__file__).resolve().parents[1] / "experts" / "fashion-mnist" / "denoised"
DATASET = "fashion-mnist"
SIGMAS = (0.25, 0.5, 1.0)
CLASSIFIER = dict(arch="cnn_small", batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4,
                  seed=0)


def classifier_settings(epochs: int, train_size: int | None) -> dict:
    return {**CLASSIFIER, "epochs": epochs, "train_size": train_size, "dataset": DATASET,
            "split": "train", "loss": "cross-entropy on clean images"}


def train_classifier(out: Path, train: TensorImageDataset, settings: dict, device: str,
                     progress: bool):
    """A clean cnn_small (SGD nesterov, cosine per step); checkpoints under ``out/.train/``."""
    info = train.info
    torch.manual_seed(settings["seed"])
    model = create_classifier(settings["arch"], info.num_classes, info.input_size, info.mean,
                              info.std).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings["lr"],
                                momentum=settings["momentum"],
                                weight_decay=settings["weight_decay"], nesterov=True)
    steps = math.ceil(len(train) / settings["batch_size"])
    epochs = settings["epochs"]

    def step(forward, x, y, gen, local):
        x, y = local(x), local(y)
        logits = forward(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"loss": float(loss.detach()),
                      "acc": float((logits.argmax(1) == y).float().mean())}

    stats = fit(model, optimizer, train, settings["batch_size"], step,
                lambda e, i: cosine_lr(settings["lr"], e * steps + i, steps * epochs),
                epochs=epochs, steps_per_epoch=steps, seed=settings["seed"], out=out,
                settings=settings, device=device, desc="train clean cnn_small",
                progress=progress)
    return model.eval(), stats


def load_classifier(out: Path, info):
    """The classifier of a finished card in ``out`` (read once, hashed, strictly loaded)."""
    files = read_artifact(out)
    model = create_classifier(CLASSIFIER["arch"], info.num_classes, info.input_size, info.mean,
                              info.std)
    model.net.load_state_dict(tensors_from_bytes(files.weights, str(out))[0], strict=True)
    return model.eval()


@torch.no_grad()
def evaluate(parts: DenoiserParts, images: torch.Tensor, labels: torch.Tensor, seed: int) -> dict:
    """Accuracy on ``images``: clean, and under one noise draw per sigma with and without the
    denoiser (a check that denoising helps; not a certificate)."""
    def accuracy(model, x):
        preds = torch.cat([model(part).argmax(1) for part in x.split(500)])
        return round(float((preds == labels).float().mean()), 4)

    result = {"inputs": len(images), "clean": accuracy(parts.classifier, images)}
    for i, sigma in enumerate(SIGMAS):
        noisy = images + sigma * torch.randn(images.shape, generator=noise_generator(seed, i,
                                                                                     "predict"))
        result[f"sigma={sigma}"] = {
            "timestep": DenoisedClassifier(parts, sigma).t,
            "denoised": accuracy(DenoisedClassifier(parts, sigma), noisy),
            "classifier_alone": accuracy(parts.classifier, noisy)}
    return result


@torch.no_grad()
def throughput(parts: DenoiserParts, input_size, sigma: float = 0.5, batch: int = 2500,
               reps: int = 2) -> float:
    """Noisy forwards per second of the expert at ``sigma`` (fp32, batch ``batch``)."""
    model = DenoisedClassifier(parts, sigma)
    device = next(parts.unet.parameters()).device
    x = (torch.rand(batch, *input_size) + sigma * torch.randn(batch, *input_size)).to(device)
    model(x)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        model(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * reps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT, help=f"card folder (default {ROOT})")
    parser.add_argument("--epochs-denoiser", type=int, default=DenoiserTrainConfig.epochs)
    parser.add_argument("--epochs-classifier", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-size", type=int, default=None,
                        help="train both parts on the first N training images (smoke runs)")
    parser.add_argument("--eval-size", type=int, default=1000,
                        help="validation images for the card's one-draw accuracy check")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1; 0: torch's default)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out, progress = args.out, not args.no_progress
    train = load_dataset(DATASET, "train", augment=False)
    if args.train_size is not None:
        train = TensorImageDataset(train.images[: args.train_size],
                                   train.labels[: args.train_size], train.info, train.source,
                                   train.split)
    info = train.info
    with FileLock(out.resolve() / ".lock", str(out)):
        den_config = DenoiserTrainConfig(epochs=args.epochs_denoiser, max_sigma=max(SIGMAS),
                                         train_size=args.train_size)
        train_denoiser(train.images, out / "denoiser", den_config, device=args.device,
                       progress=progress)
        files = read_denoiser(out / "denoiser")
        block = denoiser_block("denoiser", None, files)
        settings = classifier_settings(args.epochs_classifier, args.train_size)

        finished = (out / CONFIG_FILE).is_file() and not (out / CHECKPOINT).is_file()
        card = read_card(out) if finished else None
        if card is not None:
            recorded = card.training.get("classifier", {}).get("settings")
            if recorded != json.loads(json.dumps(settings)):
                raise ResumeError(f"{out} holds a classifier trained with other settings; "
                                  "choose another --out or delete the folder")
            model, stats = load_classifier(out, info), card.training["classifier"].get("final")
        else:
            model, stats = train_classifier(out, train, settings, args.device, progress)
        parts = build_parts(files, model.cpu())
        if card is not None and card.denoiser == block:
            print(f"{out}: up to date")
        else:  # a new card, or a denoiser rebuilt since the card was written
            val = load_dataset(DATASET, "validation")
            n = min(args.eval_size, len(val))
            check = evaluate(parts, val.images[:n], val.labels[:n], CLASSIFIER["seed"])
            card = ExpertCard(
                architecture=CLASSIFIER["arch"], num_classes=info.num_classes,
                input_size=info.input_size, mean=info.mean, std=info.std, sigma=None,
                dataset=DATASET, label_names=list(info.label_names), arch_source="rsrouter",
                name="fashion-mnist-denoised", sigmas=SIGMAS, kind="denoised", denoiser=block,
                training={
                    "method": "denoised smoothing (Carlini et al. 2023): one-step DDPM denoiser "
                              "before a clean classifier",
                    "classifier": {"optimizer": "SGD (nesterov, momentum 0.9)",
                                   "schedule": "cosine, per step", "train_inputs": len(train),
                                   "final": stats, "settings": settings},
                    "denoiser": json.loads((out / "denoiser" / TRAINING_FILE).read_text()),
                    "validation_check": {"split": "validation", "first": n,
                                         "note": "one noise draw per image, not a certificate",
                                         **check},
                })
            save_expert(out, model.net, card)
            (out / CHECKPOINT).unlink(missing_ok=True)
            if (out / ".train").is_dir() and not any((out / ".train").iterdir()):
                (out / ".train").rmdir()
            print(f"{out}: built; validation check {json.dumps(check)}")
    rate = throughput(parts.to(args.device), info.input_size)
    print(f"throughput at sigma 0.5: {rate:,.0f} noisy forwards/s (batch 2500, fp32, "
          f"{torch.get_num_threads()} threads, {args.device}); 500 images x 10,100 samples x "
          f"{len(SIGMAS)} sigmas: {500 * 10_100 * len(SIGMAS) / rate / 3600:.1f} h")


if __name__ == "__main__":
    main()
