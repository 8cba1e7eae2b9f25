"""``tuner diagnose`` (the classic init experiment) and ``tuner pretrain`` (a checkpoint for
``init = "pretrained"``)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tuner.cli._app import app, err, out
from tuner.core.errors import ConfigError


@app.command()
def diagnose(
    init: str = typer.Option(..., "--init", help="Init scheme, a comma list, or 'all'."),
    activation: str = typer.Option(..., "--activation",
                                   help="Activation, a comma list, or 'all'."),
    depth: int = typer.Option(10, "--depth", help="Hidden layers."),
    width: int = typer.Option(500, "--width", help="Units per hidden layer (and input size)."),
    samples: int = typer.Option(1000, "--samples", help="Rows of the N(0, 1) input."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seeds the weights and the input."),
    bins: int = typer.Option(30, "--bins", help="Histogram bins per layer."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    png: Path | None = typer.Option(None, "--png", help="Draw the histogram figure to FILE."),
) -> None:
    """Check init schemes the textbook way: layer statistics of a fresh deep MLP.

    Pushes N(0, 1) data through a freshly initialised depth x width MLP and prints per-layer
    activation mean/std/histogram, the gradient std of one backward pass, and a health
    verdict."""
    from tuner.nn.diagnostics import diagnose_many

    runs = diagnose_many(init, activation, depth=depth, width=width, samples=samples,
                         seed=seed, bins=bins)
    if png is not None:
        from tuner.views.diagnose_plot import save_png

        err.print(f"wrote {save_png(runs, png)}")
    if as_json:
        records = [d.as_dict() for d in runs]
        out.print_json(json.dumps(records[0] if len(records) == 1 else records))
    elif len(runs) == 1:
        _render_layers(runs[0])
    else:
        _render_summary(runs)


def _render_layers(d: Any) -> None:
    table = Table(title=f"{d.scheme} + {d.activation}: {d.depth} x {d.width}, input N(0, 1), "
                  f"{d.samples} samples", title_justify="left")
    for col in ("layer", "act mean", "act std", "saturated", "grad std", "weight grad std"):
        table.add_column(col, justify="right")
    for x in d.layers:
        table.add_row(str(x.layer), f"{x.mean:.3g}", f"{x.std:.3g}", f"{x.saturated:.0%}",
                      f"{x.grad_std:.3g}", f"{x.weight_grad_std:.3g}")
    out.print(table)
    out.print(f"verdict: {d.verdict}" + (f" — {d.reason}" if d.reason else ""))


def _render_summary(runs: list[Any]) -> None:
    last = runs[0].depth
    table = Table(title=f"{runs[0].depth} x {runs[0].width}, input N(0, 1), "
                  f"{runs[0].samples} samples", title_justify="left")
    for col in ("init", "activation", "std L1", f"std L{last}", "grad std L1", "verdict"):
        table.add_column(col, no_wrap=True, justify="left" if col in ("init", "activation",
                                                                        "verdict") else "right")
    for d in runs:
        table.add_row(d.scheme, d.activation, f"{d.layers[0].std:.3g}",
                      f"{d.layers[-1].std:.3g}", f"{d.layers[0].grad_std:.3g}", d.verdict)
    out.print(table)


def _toml_value(text: str) -> Any:
    """``3`` -> 3, ``[0, 1]`` -> [0, 1], ``true`` -> True; anything else stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _pairs(items: list[str], flag: str) -> dict[str, Any]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} needs KEY=VALUE, got {item!r}")
        pairs[key.strip()] = _toml_value(value.strip())
    return pairs


@app.command()
def pretrain(
    output: Path = typer.Option(..., "-o", "--output", help="Checkpoint file to write."),
    dataset: str = typer.Option("digits", "--dataset", help="Source task's dataset."),
    classes: str | None = typer.Option(
        None, "--classes", help="Keep only these labels, e.g. 0,1,2,3,4 (default: all)."),
    model: str = typer.Option("mlp", "--model", help="mlp or cnn."),
    epochs: int = typer.Option(20, "--epochs", help="Training epochs on the source task."),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="A [space] value, KEY=VALUE (repeatable): lr, batch_size, "
        "init, activation, depth, width, optimizer, weight_decay, momentum."),
    setting: list[str] = typer.Option(
        [], "--set", help="Another [objective] setting, KEY=VALUE (repeatable): path, target, "
        "val_fraction, device …"),
    seed: int = typer.Option(0, "--seed", min=0, help="Seeds the split, init and batches."),
) -> None:
    """Train a classifier on a source task and save it as a checkpoint to fine-tune from.

    A study starts from it with [space] init = "pretrained" and [objective] checkpoint =
    "FILE"."""
    from tuner.run.pretrain import pretrain as run_pretrain

    extra = _pairs(setting, "--set")
    for key in ("dataset", "model", "epochs", "classes"):
        if key in extra:
            raise ConfigError(f"--set {key}=…: give {key} with --{key} instead")
    settings: dict[str, Any] = {"dataset": dataset, "model": model, "epochs": epochs, **extra}
    if classes is not None:
        settings["classes"] = _classes(classes)
    result = run_pretrain(settings, _pairs(param, "--param"), output, seed=seed)
    out.print(f"wrote {result.path}: {result.description}, {result.n_params} parameters; "
              f"{result.epochs} epochs on the source task: val_accuracy {result.val_accuracy:.4f}")


def _classes(text: str) -> list[int]:
    """``0,1,2`` or ``0-4`` -> a list of labels."""
    labels: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, sep, hi = part.partition("-")
            labels += list(range(int(lo), int(hi) + 1)) if sep else [int(part)]
    except ValueError:
        raise ConfigError(f"--classes needs labels like 0,1,2 or 0-4, got {text!r}") from None
    return labels
