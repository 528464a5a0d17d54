"""Training and evaluation loops for plain and memristive models, and a trained-model cache.

Noise-aware training is plain training of a converted model: in train mode its memristive
layers re-program their weights (new variation) on every forward pass and pass the gradient
straight through, back through the weights the arrays held (see :mod:`mpimpy.nn.layers`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .convert import mem_layers, program
from .models import build_model

ENV_CACHE = "MPIMPY_CACHE"


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 5,
          batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0,
          verbose: bool = False) -> list[float]:
    """Train ``model`` with Adam and cross-entropy; returns the mean loss of each epoch.

    ``seed`` seeds the batch order and, through torch's global generator, the programming
    variation drawn by memristive layers in train mode. The model is left in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    history = []
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen).to(x.device)
        total, count = 0.0, 0
        start = time.perf_counter()
        for i in range(0, len(x), batch_size):
            index = order[i:i + batch_size]
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
            count += len(index)
        history.append(total / count)
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f} "
                  f"({time.perf_counter() - start:.1f} s)")
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted classes (int64) for ``x``, in batches, in the model's current mode."""
    out = [model(x[i:i + batch_size]).argmax(-1) for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000
             ) -> float:
    """Fraction of ``x`` classified as ``y`` (the model is put in eval mode)."""
    model.eval()
    return float((predict(model, x, batch_size) == y).double().mean())


def accuracy_over_programs(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                           seeds=range(3), batch_size: int = 1000) -> list[float]:
    """Accuracy of ``model`` once per programming: for each seed the memristive layers are
    re-programmed (:func:`mpimpy.nn.program` with that seed: new variation and faults) and the
    model is evaluated on ``x``. The model is left in eval mode, programmed with the last seed.

    Programming variation is drawn once per chip, so one programming is one sample: compare
    models on the same seeds, and report the spread.
    """
    if not mem_layers(model):
        raise ValueError("the model has no memristive layers: convert it first "
                         "(mpimpy.nn.convert)")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one programming seed")
    accuracies = []
    for seed in seeds:
        program(model, seed=seed)
        accuracies.append(accuracy(model, x, y, batch_size))
    return accuracies


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int = 10
                     ) -> torch.Tensor:
    """``(num_classes, num_classes)`` counts, rows true class, columns predicted class."""
    index = y_true.cpu().long() * num_classes + y_pred.cpu().long()
    return torch.bincount(index, minlength=num_classes**2).view(num_classes, num_classes)


def cache_dir() -> Path:
    """Where :func:`pretrained` keeps trained weights: ``$MPIMPY_CACHE``, else this user's
    cache folder (``~/.cache/mpimpy`` on Linux, through :mod:`platformdirs`).

    The user's folder is created private (mode 0700) and refused when another user owns it or
    others may write to it: the cache holds files that :func:`torch.load` reads back, which must
    not sit in a folder anyone can fill (as a shared temporary folder would be).
    """
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    folder = Path(user_cache_dir("mpimpy", appauthor=False))
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
        raise PermissionError(f"the model cache {folder} must belong to you and be writable by "
                              f"you alone (chmod 700 it, or set ${ENV_CACHE})")
    return folder


def pretrained(model: str, data, *, seed: int = 0, epochs: int = 8, batch_size: int = 64,
               lr: float = 2e-3, cache: bool | str | Path = True, verbose: bool = False
               ) -> tuple[nn.Module, dict]:
    """A model trained in software on ``data`` (a :class:`mpimpy.datasets.DataSplit`).

    Loads the weights from the cache when the same model, data, seed and training settings
    were trained before; otherwise trains and stores them. ``cache``: ``True`` for
    :func:`cache_dir`, a folder, or ``False`` to always train.

    Returns:
        ``(model in eval mode, info)`` with ``info`` holding ``train_s`` (0 when loaded),
        ``cached`` and the settings.
    """
    settings = dict(model=model, data=data.name, n_train=len(data.x_train), seed=seed,
                    epochs=epochs, batch_size=batch_size, lr=lr,
                    image_shape=list(data.image_shape), torch=torch.__version__.split("+")[0])
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    torch.manual_seed(seed)
    net = build_model(model, data.image_shape, data.num_classes).to(data.x_train.device)
    path = None
    if cache:
        folder = cache_dir() if cache is True else Path(cache)
        path = folder / f"{model}-{data.name}-seed{seed}-{key}.pt"
        if path.is_file():
            net.load_state_dict(torch.load(path, map_location=data.x_train.device))
            net.eval()
            return net, dict(settings, train_s=0.0, cached=True)
    start = time.perf_counter()
    train(net, data.x_train, data.y_train, epochs=epochs, batch_size=batch_size, lr=lr,
          seed=seed, verbose=verbose)
    train_s = time.perf_counter() - start
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(net.state_dict(), tmp)
        tmp.replace(path)
    return net, dict(settings, train_s=train_s, cached=False)
