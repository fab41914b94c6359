"""RealNVP speed: boltzflow against normflows and zuko, same architectures, measured side by side.

Two architectures from paper 001: §6.1 (D=4, 8 coupling layers, separate s and t MLPs D->256->256->D on the
masked input, 1,089,600 parameters) and §6.3 (D=66, 12 layers, D->512->512->D, 7,939,632 parameters).

Per model, in float32 on CPU:

* **NLL step**: a batch of 256 data points -> latent with log-det, mean NLL, backward, ``Adam.step``;
* **sampling**: ``no_grad`` draws of samples *with* their log density, batch 4096 and 256, in samples/s.

The models' repeats are interleaved (model A, B, C, A, B, C, ...) so that load from other processes on a
shared machine hits all of them alike; each cell is the median over the repeats after warm-up.

Peers:

* normflows ``MaskedAffineFlow`` with ``nf.nets.MLP`` s and t nets of the same widths: the same architecture
  and parameter count as ours. ``nf.nets.MLP`` hard-codes (leaky) ReLU, so every model here uses ReLU.
* zuko ``flows.RealNVP`` builds one MLP per layer from the kept half ``x_a`` to both s and t (``d_a -> H -> H
  -> 2 d_b``). It cannot build the masked full-width layout, so it is run twice: with the widths we use
  (fewer parameters) and with the hidden width that brings its parameter count closest to ours. Our split
  layout (``masked_input=False``: separate nets ``d_a -> H -> H -> d_b``) is run at the parameter count of
  zuko's first variant.

The scale is soft-bounded in every model: ours ``5 tanh(s/5)``; normflows the same through the MLP's
``output_fn="tanh"`` with ``score_scale=0.2``, ``output_scale=5``; zuko its built-in
``s / (1 + |s / log 1e-3|)``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from boltzflow.flows import RealNVPConfig, n_parameters, realnvp
from boltzflow.flows.realnvp import half_masks

NLL_BATCH = 256
SAMPLE_BATCHES = (4096, 256)
SCALE_CLAMP = 5.0


class Model(NamedTuple):
    """One flow under test.

    Attributes:
        name: label in the table.
        module: the nn.Module that owns every trainable parameter.
        nll: mean negative log-likelihood of a batch, ``(n, D) -> ()``.
        sample: ``n -> (x, log_prob)`` with shapes ``(n, D)`` and ``(n,)``.
    """

    name: str
    module: nn.Module
    nll: Callable[[Tensor], Tensor]
    sample: Callable[[int], tuple[Tensor, Tensor]]


class Case(NamedTuple):
    """An architecture from the paper: event dimension, coupling layers, hidden width of the s and t nets."""

    label: str
    dim: int
    n_layers: int
    hidden: int


CASES = (Case("paper 001 §6.1", 4, 8, 256), Case("paper 001 §6.3", 66, 12, 512))


def boltzflow_model(dim: int, n_layers: int, hidden: int, masked_input: bool, name: str) -> Model:
    """Our RealNVP (``boltzflow.flows.realnvp``) with ReLU nets."""
    cfg = RealNVPConfig(
        dim, n_layers, [hidden, hidden], masked_input=masked_input, activation="relu", scale_clamp=SCALE_CLAMP
    )
    flow = realnvp(cfg)
    gen = torch.Generator().manual_seed(1)

    def sample(n: int) -> tuple[Tensor, Tensor]:
        s = flow.sample(n, gen)
        return s.x, s.log_prob

    return Model(name, flow, lambda x: -flow.log_prob(x).mean(), sample)


def normflows_model(dim: int, n_layers: int, hidden: int) -> Model:
    """normflows ``MaskedAffineFlow`` stack, s and t nets ``D -> H -> H -> D`` on the masked input."""
    import normflows as nf

    flows = []
    for mask in half_masks(dim, n_layers):
        b = mask.to(torch.float32)
        s = nf.nets.MLP(
            [dim, hidden, hidden, dim],
            init_zeros=True,
            output_fn="tanh",
            score_scale=1 / SCALE_CLAMP,
            output_scale=SCALE_CLAMP,
        )
        t = nf.nets.MLP([dim, hidden, hidden, dim], init_zeros=True)
        flows.append(nf.flows.MaskedAffineFlow(b, t, s))
    model = nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), flows)
    return Model("normflows MaskedAffineFlow", model, model.forward_kld, model.sample)


def zuko_model(dim: int, n_layers: int, hidden: int) -> Model:
    """zuko ``flows.RealNVP``: one ReLU MLP ``d_a -> H -> H -> 2 d_b`` per coupling layer."""
    import zuko

    flow = zuko.flows.RealNVP(dim, transforms=n_layers, hidden_features=(hidden, hidden))

    def sample(n: int) -> tuple[Tensor, Tensor]:
        return flow().rsample_and_log_prob((n,))

    return Model(f"zuko RealNVP, H={hidden}", flow, lambda x: -flow().log_prob(x).mean(), sample)


def _mlp_params(widths: list[int]) -> int:
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=False))


def zuko_hidden_for(n_params: int, dim: int, n_layers: int) -> int:
    """Hidden width at which zuko's RealNVP has the parameter count nearest ``n_params``."""
    d_a, d_b = dim - dim // 2, dim // 2  # zuko's checkered mask keeps the odd entries
    count = lambda h: n_layers * _mlp_params([d_a, h, h, 2 * d_b])  # noqa: E731
    return min(range(8, 4096), key=lambda h: abs(count(h) - n_params))


def split_hidden_for(n_params: int, dim: int, n_layers: int) -> int:
    """Hidden width at which our split layout has the parameter count nearest ``n_params``."""
    d_a, d_b = dim // 2, dim - dim // 2
    count = lambda h: n_layers * 2 * _mlp_params([d_a, h, h, d_b])  # noqa: E731
    return min(range(8, 4096), key=lambda h: abs(count(h) - n_params))


def build_models(case: Case) -> list[Model]:
    """The five models compared for one architecture."""
    torch.manual_seed(0)
    ours = boltzflow_model(case.dim, case.n_layers, case.hidden, True, "boltzflow masked")
    zuko_native = zuko_model(case.dim, case.n_layers, case.hidden)
    h_zuko = zuko_hidden_for(n_parameters(ours.module), case.dim, case.n_layers)
    h_split = split_hidden_for(n_parameters(zuko_native.module), case.dim, case.n_layers)
    return [
        ours,
        normflows_model(case.dim, case.n_layers, case.hidden),
        zuko_model(case.dim, case.n_layers, h_zuko),
        boltzflow_model(case.dim, case.n_layers, h_split, False, f"boltzflow split, H={h_split}"),
        zuko_native,
    ]


def _interleaved_times(tasks: list[Callable[[], None]], repeats: int, inner: int) -> list[list[float]]:
    """Seconds per call of each task in every repeat; the tasks take turns within each repeat."""
    for task in tasks:  # warm-up: allocator, thread pool, optimizer state
        task()
        task()
    times: list[list[float]] = [[] for _ in tasks]
    for r in range(repeats):
        order = range(len(tasks)) if r % 2 == 0 else reversed(range(len(tasks)))
        for i in order:
            t0 = time.perf_counter()
            for _ in range(inner):
                tasks[i]()
            times[i].append((time.perf_counter() - t0) / inner)
    return times


def _nll_step_task(model: Model, x: Tensor) -> Callable[[], None]:
    opt = torch.optim.Adam(model.module.parameters(), lr=1e-5)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = model.nll(x)
        loss.backward()
        opt.step()

    return step


def _sample_task(model: Model, n: int) -> Callable[[], None]:
    def draw() -> None:
        with torch.no_grad():
            x, log_prob = model.sample(n)
        if not (x.shape == (n, x.shape[-1]) and log_prob.shape == (n,)):
            raise RuntimeError(
                f"{model.name}: unexpected sample shapes {tuple(x.shape)}, {tuple(log_prob.shape)}"
            )

    return draw


def bench_case(case: Case, quick: bool) -> str:
    """Markdown table for one architecture."""
    models = build_models(case)
    x = torch.randn(NLL_BATCH, case.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float32)
    repeats, inner = (2, 1) if quick else (5, 2)
    load0 = os.getloadavg()[0]
    nll = _interleaved_times([_nll_step_task(m, x) for m in models], repeats, inner)
    sampling = {
        n: _interleaved_times([_sample_task(m, n) for m in models], repeats, 1 if quick or n > 1024 else 4)
        for n in SAMPLE_BATCHES
    }
    load1 = os.getloadavg()[0]
    head = " | ".join(f"sampling + log q, batch {n} (samples/s)" for n in SAMPLE_BATCHES)
    rows = [
        f"### {case.label}: D={case.dim}, {case.n_layers} coupling layers, hidden width {case.hidden}",
        "",
        f"| model | parameters | NLL step, batch {NLL_BATCH} (ms) | {head} |",
        "| --- | ---: | ---: |" + " ---: |" * len(SAMPLE_BATCHES),
    ]
    for i, m in enumerate(models):
        ms = f"{1e3 * statistics.median(nll[i]):.1f} ({1e3 * min(nll[i]):.1f})"
        rates = " | ".join(
            f"{n / statistics.median(sampling[n][i]):,.0f} ({n / min(sampling[n][i]):,.0f})"
            for n in SAMPLE_BATCHES
        )
        rows.append(f"| {m.name} | {n_parameters(m.module):,} | {ms} | {rates} |")
    rows += [
        "",
        f"Median (best) over {repeats} interleaved repeats; an NLL repeat averages {inner} steps. "
        f"1-min load average {load0:.1f} before, {load1:.1f} after.",
        "",
    ]
    return "\n".join(rows)


def run(quick: bool = False) -> str:
    """Run the RealNVP comparison; returns a markdown section."""
    head = [
        "## RealNVP: boltzflow vs normflows vs zuko",
        "",
        "float32, CPU. NLL step = data -> latent with log-det, mean NLL, backward, Adam step. Sampling = "
        "`no_grad` draw of x together with log q(x). All nets use ReLU (normflows' `nets.MLP` hard-codes it) "
        "and a soft bound on the log-scale. The first three rows of each table are the masked full-width "
        "layout (separate s and t nets on the masked D-vector) or, for zuko, which cannot build it, its "
        "one-net layout widened to the same parameter count; the last two rows compare our split layout "
        "with zuko's native one at (nearly) equal parameter counts.",
        "",
    ]
    body = [bench_case(case, quick) for case in (CASES[:1] if quick else CASES)]
    if quick:
        body.append("(quick run: §6.1 only, 2 repeats; not for quoting)\n")
    return "\n".join(head + body)
