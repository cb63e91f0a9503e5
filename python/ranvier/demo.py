"""``ranvier demo``: train a small network to tell malignant from benign breast tumours.

The data are the 569 tumours of the Wisconsin Diagnostic Breast Cancer set that ships with
scikit-learn: 30 measurements of cell nuclei per tumour (radius, texture, smoothness, ...),
212 malignant and 357 benign. A quarter is held out (stratified, so both parts keep the
class balance); the features are standardised with the training part's statistics only,
so nothing about the held-out tumours leaks into training. A two-layer perceptron
(30 -> hidden -> 2) is trained with cross-entropy and Adam over shuffled mini-batches, and
judged on the held-out tumours by accuracy and ROC AUC (malignant as the positive class).

Everything runs on ranvier's own CPU kernels in a few seconds, or with ``device='cuda'``
(``ranvier demo --device cuda``) on its CUDA kernels: the model and the mini-batches live on
the GPU, the metrics are computed on the host from the copied-back logits.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import ranvier
from ranvier import nn
from ranvier._arrays import resolve_device
from ranvier.metrics import roc_auc_score

__all__ = ["run_demo", "load_tumours"]

# In scikit-learn's copy of the data, target 0 is malignant and 1 benign.
MALIGNANT = 0


def load_tumours(seed: int = 0, test_size: float = 0.25):
    """The breast-tumour table split into standardised float32 training and held-out parts.

    Returns (x_train (N_train, 30), y_train (N_train,), x_test (N_test, 30), y_test (N_test,),
    feature_names); y holds int64 class indices (0 malignant, 1 benign).
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=test_size, stratify=data.target, random_state=seed)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0  # a constant feature stays 0 instead of becoming NaN
    x_train = ((x_train - mean) / std).astype(np.float32)
    x_test = ((x_test - mean) / std).astype(np.float32)
    return (x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64),
            list(data.feature_names))


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def _to_numpy(t) -> np.ndarray:
    """The values of a ranvier Tensor (or an array) as a host NumPy array."""
    if hasattr(t, "detach"):
        t = t.detach().cpu()
    if hasattr(t, "numpy"):
        return np.asarray(t.numpy())
    return np.asarray(t)


def _evaluate(model, x_test, y_test, device="cpu"):
    model.eval()
    with ranvier.no_grad():
        logits = _to_numpy(model(ranvier.tensor(x_test, device=device))).astype(np.float64)
    model.train()
    probabilities = _softmax_rows(logits)
    accuracy = float((probabilities.argmax(axis=1) == y_test).mean())
    auc = roc_auc_score(y_test == MALIGNANT, probabilities[:, MALIGNANT])
    return accuracy, auc


def run_demo(epochs: int = 30, hidden: int = 64, lr: float = 1e-3, batch_size: int = 32,
             seed: int = 0, progress: bool | None = None, stream=None,
             device: str = "cpu") -> dict:
    """Train the tumour classifier and report on the held-out tumours.

    Args:
        epochs: passes over the training tumours.
        hidden: width of the hidden layer.
        lr: Adam's learning rate.
        batch_size: tumours per mini-batch.
        seed: drives the split, the initial weights and the shuffling.
        progress: a tqdm bar per epoch; None shows it when ``stream`` is a terminal.
        stream: a text stream to print to (default sys.stdout).
        device: 'cpu', 'cuda' or 'cuda:N' for the model and the mini-batches; asking for a
            GPU when none can be used raises RuntimeError with the reason, before any work.

    Returns a dict: accuracy, roc_auc, n_test, n_train, n_features, epochs, seconds, device
    ('cpu' or 'cuda:N'), history (one dict per epoch: epoch, train_loss, accuracy).
    """
    for name, value in (("epochs", epochs), ("hidden", hidden), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"run_demo: {name} must be a positive integer, got {value!r}")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"run_demo: lr must be a positive number, got {lr!r}")
    device = resolve_device(device, "demo")
    stream = sys.stdout if stream is None else stream
    if progress is None:
        progress = bool(getattr(stream, "isatty", lambda: False)())

    started = time.perf_counter()
    x_train, y_train, x_test, y_test, _ = load_tumours(seed)
    n_train, n_features = x_train.shape
    generator = ranvier.manual_seed(seed)

    model = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 2))
    model.to(device)  # before the optimizer's first step, so that its state is made there
    loss_fn = nn.CrossEntropyLoss()
    optimizer = ranvier.optim.Adam(model.parameters(), lr=lr)
    print(f"ranvier demo: {n_train} training and {len(y_test)} held-out tumours, "
          f"{n_features} features; model {n_features}-{hidden}-2, Adam lr={lr:g}, "
          f"batch {batch_size}, on {device}", file=stream)

    history = []
    n_batches = (n_train + batch_size - 1) // batch_size
    for epoch in range(1, epochs + 1):
        order = generator.numpy.permutation(n_train)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            # Updated by hand (not iterated): iterating closes the bar at the last batch,
            # before the epoch's loss and accuracy can be shown on it.
            bar = tqdm(total=n_batches, desc=f"epoch {epoch:>{len(str(epochs))}}/{epochs}",
                       unit="batch", file=stream, leave=True, dynamic_ncols=True)
        loss_sum = 0.0
        for b in range(n_batches):
            index = order[b * batch_size:(b + 1) * batch_size]
            logits = model(ranvier.tensor(x_train[index], device=device))
            loss = loss_fn(logits, ranvier.tensor(y_train[index], device=device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.item()) * len(index)
            if bar is not None:
                bar.update(1)
        train_loss = loss_sum / n_train
        accuracy, auc = _evaluate(model, x_test, y_test, device)
        history.append({"epoch": epoch, "train_loss": train_loss, "accuracy": accuracy,
                        "roc_auc": auc})
        if bar is not None:
            bar.set_postfix_str(f"train loss {train_loss:.4f}, held-out accuracy {accuracy:.3f}")
            bar.close()
        else:
            print(f"epoch {epoch:>{len(str(epochs))}}/{epochs}  train loss {train_loss:.4f}  "
                  f"held-out accuracy {accuracy:.3f}", file=stream)

    accuracy, auc = history[-1]["accuracy"], history[-1]["roc_auc"]
    seconds = time.perf_counter() - started
    print(f"held-out accuracy: {accuracy:.3f}  ROC AUC: {auc:.3f}  "
          f"({len(y_test)} tumours, {n_features} features)", file=stream)
    return {"accuracy": accuracy, "roc_auc": auc, "n_test": int(len(y_test)),
            "n_train": int(n_train), "n_features": int(n_features), "epochs": epochs,
            "seconds": seconds, "device": device, "history": history}
