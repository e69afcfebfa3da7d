"""The tower: per-level encoders (LSTM + embeddings), attention pooling child → parent, a top-down pass.

Shapes use ``B`` issue steps, ``N_l`` units of level ``l``, ``L`` input steps,
``H`` horizons, ``C`` target channels. Nodes sit on dimension 1, so one graph
serves a whole batch and pooling is a scatter over that dimension.

Per level, each unit is encoded from

- its recent window: an LSTM over the last ``lstm_window`` steps and the
  whole window flattened (the "time series embedding" of STID-style models),
  standardised per unit, with an observed flag per value;
- its seasonal lags: the values one and two days and one week before each
  target step, in the city's local time;
- a learned unit embedding and its static features;
- learned embeddings of the local time-of-day slot and day class (weekday or
  holiday) of every target step, and the external features (weather,
  holiday) of the target steps;

then children are pooled into their parent with attention (torch-geometric
``softmax``/``scatter`` over the child → parent edges), same-level neighbours
are mixed in, and a top-down pass hands the upper levels' context back down.

With a base forecast (``residual``: the ridge regression of the harness, in
closed form), the head forecasts the correction to it and starts at zero, so
the untrained tower is the base and training only moves it where the
validation loss says it helps.

Coherence is by construction: only the bottom level has a density head; every
level's forecast is the sum of its bottom descendants' forecasts, so children
sum to their parent exactly (see ``docs/model.md``). Upper levels still shape
the forecast: their own encoders read their own series, and the training loss
is taken at every level.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter, softmax

from ciu.models.inputs import DAY_CLASSES, Batch


class TemporalEncoder(nn.Module):
    """An LSTM over each unit's input window; returns the last hidden state.

    Parameters
    ----------
    in_channels
        Features per step.
    hidden_channels
        LSTM width.
    """

    def __init__(self, in_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.lstm = nn.LSTM(in_channels, hidden_channels, batch_first=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lstm.reset_parameters()

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None, *,
                chunk: int = 131072) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x`` ``(B, N, L, F)`` → ``(B, N, D)`` and the LSTM state ``(h, c)``.

        Without gradients, sequences go through in chunks of ``chunk`` (memory
        stays flat for a million units).
        """
        b, n, length, f = x.shape
        flat = x.reshape(b * n, length, f)
        if torch.is_grad_enabled() or state is not None or b * n <= chunk:
            _, (h, c) = self.lstm(flat, state)
        else:
            parts = [self.lstm(flat[i:i + chunk])[1] for i in range(0, b * n, chunk)]
            h = torch.cat([p[0] for p in parts], dim=1)
            c = torch.cat([p[1] for p in parts], dim=1)
        return h[-1].reshape(b, n, -1), (h, c)


class ChildAttentionPool(nn.Module):
    """Attention aggregation of children into their parent over child → parent edges.

    ``alpha_ij = softmax_j(a · tanh(W_c h_j + W_p h_i))`` over the children ``j`` of
    parent ``i``; the parent receives ``sum_j alpha_ij V h_j``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.child = nn.Linear(channels, channels)
        self.parent = nn.Linear(channels, channels, bias=False)
        self.score = nn.Linear(channels, 1, bias=False)
        self.value = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.child, self.parent, self.score, self.value):
            lin.reset_parameters()

    def forward(self, h_child: Tensor, h_parent: Tensor, parent_index: Tensor) -> tuple[Tensor, Tensor]:
        """Pooled children ``(B, N_parent, D)`` and the attention weights ``(B, N_child)``."""
        n_parent = h_parent.shape[1]
        e = self.score(torch.tanh(self.child(h_child) + self.parent(h_parent)[:, parent_index])).squeeze(-1)
        alpha = softmax(e, parent_index, num_nodes=n_parent, dim=1)
        pooled = scatter(alpha.unsqueeze(-1) * self.value(h_child), parent_index, dim=1, dim_size=n_parent,
                         reduce="sum")
        return pooled, alpha


class NeighbourMix(nn.Module):
    """Mean of same-level neighbours (edge_index ``(2, M)``, source → target), projected."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.lin = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()

    def forward(self, h: Tensor, edge_index: Tensor) -> Tensor:
        if edge_index.shape[1] == 0:
            return torch.zeros_like(h)
        src, dst = edge_index
        return self.lin(scatter(h[:, src], dst, dim=1, dim_size=h.shape[1], reduce="mean"))


class ResidualBlock(nn.Module):
    """``x + W2 · dropout(relu(W1 · x))``: the encoder block of STID-style models."""

    def __init__(self, channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.channels = channels
        self.fc1 = nn.Linear(channels, channels)
        self.fc2 = nn.Linear(channels, channels)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(self.dropout(F.relu(self.fc1(x))))


@dataclass
class TowerConfig:
    """Hyper-parameters of a :class:`Tower` (all explicit, all recorded with each run).

    The sizes (``units`` .. ``slots_per_day``) come from the data; the rest are
    the choices of :class:`ciu.models.train.TrainConfig` (their defaults live there),
    and the ``use_*`` switches are the ablations of the benchmark.
    """

    levels: tuple[str, ...]
    units: tuple[int, ...]
    channels: int
    history: int
    horizons: int
    lags: int
    covariates: int
    static: tuple[int, ...]
    external: int
    slots_per_day: int
    hidden: int
    layers: int
    lstm_hidden: int
    lstm_window: int
    unit_embedding: int
    time_embedding: int
    dropout: float
    use_lstm: bool
    use_unit_embedding: bool
    use_time_embedding: bool
    use_seasonal_lags: bool
    top_down: bool
    neighbours: bool
    nonnegative: bool = True
    residual: bool = False

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        for key in ("levels", "units", "static"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> TowerConfig:
        d = dict(d)
        for key in ("levels", "units", "static"):
            d[key] = tuple(d[key])  # type: ignore[arg-type]
        return cls(**d)  # type: ignore[arg-type]


@dataclass
class TowerOutput:
    """Forecasts at every level on the original scale and standardised, and the attention weights."""

    value: list[Tensor]  # per level (B, N_l, H, C), original scale
    z: list[Tensor]  # per level (B, N_l, H, C), standardised by the level's scaler
    attention: list[Tensor]  # per level above the bottom (B, N_child)


class LevelEncoder(nn.Module):
    """One level's units, each from its own window, lags, embeddings and the target steps' calendar."""

    def __init__(self, config: TowerConfig, level: int) -> None:
        super().__init__()
        cfg = self.config = config
        c, h = cfg.channels, cfg.horizons
        self.level = level
        n_in = cfg.history * 2 * c + h * cfg.covariates + cfg.static[level] + h * cfg.external
        if cfg.use_seasonal_lags:
            n_in += h * cfg.lags * c
        if cfg.use_unit_embedding:
            self.unit = nn.Embedding(cfg.units[level], cfg.unit_embedding)
            n_in += cfg.unit_embedding
        if cfg.use_time_embedding:
            self.slot = nn.Embedding(cfg.slots_per_day, cfg.time_embedding)
            self.day = nn.Embedding(DAY_CLASSES, cfg.time_embedding)
            n_in += 2 * h * cfg.time_embedding
        if cfg.use_lstm:
            self.temporal = TemporalEncoder(2 * c, cfg.lstm_hidden)
            self.temporal_proj = nn.Linear(cfg.lstm_hidden, cfg.hidden, bias=False)
        self.n_in = n_in
        self.proj = nn.Linear(n_in, cfg.hidden)
        self.blocks = nn.ModuleList([ResidualBlock(cfg.hidden, cfg.dropout) for _ in range(cfg.layers)])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.children():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        for block in self.blocks:
            block.reset_parameters()
        if self.config.use_unit_embedding:
            nn.init.normal_(self.unit.weight, std=0.1)
        if self.config.use_lstm:
            # the LSTM's share starts at zero and grows as far as it helps: a fresh LSTM otherwise slows
            # down what the window and the embeddings learn in the first epochs (measured on the sample city)
            nn.init.zeros_(self.temporal_proj.weight)

    def forward(self, batch: Batch, static: Tensor) -> Tensor:
        cfg = self.config
        i = self.level
        seq = batch.seq[i]
        b, n = seq.shape[:2]
        parts = [seq.flatten(2)]
        if cfg.use_seasonal_lags:
            parts.append(batch.lags[i])
        if batch.cov is not None and cfg.covariates:
            parts.append(batch.cov[i])
        if static.shape[1]:
            parts.append(static[None].expand(b, -1, -1))
        if cfg.use_unit_embedding:
            parts.append(self.unit.weight[None].expand(b, -1, -1))
        shared = [batch.ext] if cfg.external else []
        if cfg.use_time_embedding:
            shared += [self.slot(batch.slot).flatten(1), self.day(batch.day).flatten(1)]
        if shared:
            parts.append(torch.cat(shared, dim=-1)[:, None].expand(-1, n, -1))
        x = self.proj(torch.cat(parts, dim=-1))
        if cfg.use_lstm:
            x = x + self.temporal_proj(self.temporal(seq[:, :, -cfg.lstm_window:])[0])
        for block in self.blocks:
            x = block(x)
        return x


class Tower(nn.Module):
    """The tower model (see the module docstring).

    Parameters
    ----------
    config
        Hyper-parameters.
    """

    def __init__(self, config: TowerConfig) -> None:
        super().__init__()
        self.config = config
        n, d = len(config.levels), config.hidden
        self.encoders = nn.ModuleList([LevelEncoder(config, i) for i in range(n)])
        self.pools = nn.ModuleList([ChildAttentionPool(d) for _ in range(n - 1)])
        self.mix = nn.ModuleList([NeighbourMix(d) for _ in range(n)])
        self.norms = nn.ModuleList([nn.LayerNorm(d) for _ in range(n)])
        self.down = nn.ModuleList([nn.Linear(d, d) for _ in range(n - 1)])
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, config.horizons * config.channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for group in (self.encoders, self.pools, self.mix, self.norms, self.down):
            for m in group:
                m.reset_parameters()
        for m in self.head:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        if self.config.residual:  # a correction of the base forecast starts at none: the untrained model is the base
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)

    def encode(self, batch: Batch, static: list[Tensor], parent: list[Tensor],
               neighbours: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Bottom-up then top-down: one embedding ``(B, N_l, D)`` per level, and the attention weights."""
        hs: list[Tensor] = []
        attention: list[Tensor] = []
        for i, enc in enumerate(self.encoders):
            h = enc(batch, static[i])
            if i > 0:
                pooled, alpha = self.pools[i - 1](hs[i - 1], h, parent[i - 1])
                h = h + pooled
                attention.append(alpha)
            if self.config.neighbours:
                h = h + self.mix[i](h, neighbours[i])
            hs.append(self.norms[i](h))
        if self.config.top_down:
            for i in range(len(hs) - 2, -1, -1):
                hs[i] = hs[i] + self.down[i](hs[i + 1])[:, parent[i]]
        return hs, attention

    def forward(self, batch: Batch, *, static: list[Tensor], parent: list[Tensor], neighbours: list[Tensor],
                mean: list[Tensor], sd: list[Tensor], bottom_mask: Tensor | None = None,
                base: Tensor | None = None) -> TowerOutput:
        """Forecast every level.

        Parameters
        ----------
        batch
            Windows of the issue steps (:meth:`ciu.models.inputs.TorchInputs.batch`).
        static, parent, neighbours
            Per level: static features ``(N, S)``, child → parent index (every level
            but the top) and same-level ``edge_index``.
        mean, sd
            Per level ``(N_l, C)``: the scaler; forecasts come back on the original scale and standardised.
        bottom_mask
            Optional ``(N_0,)`` 0/1 multiplier of the bottom forecasts (closures).
        base
            Optional ``(B, N_0, H, C)`` base forecast of the bottom level, standardised
            by the bottom scaler: the head then forecasts its correction.
        """
        cfg = self.config
        hs, attention = self.encode(batch, static, parent, neighbours)
        b, n0 = hs[0].shape[:2]
        z0 = self.head(hs[0]).reshape(b, n0, cfg.horizons, cfg.channels)
        if base is not None:
            z0 = z0 + base
        bottom = z0 * sd[0][None, :, None] + mean[0][None, :, None]
        if cfg.nonnegative and not self.training:
            bottom = bottom.clamp_min(0.0)
        if bottom_mask is not None:
            bottom = bottom * bottom_mask[None, :, None, None]
        values = [bottom]
        for i in range(len(hs) - 1):
            values.append(scatter(values[-1], parent[i], dim=1, dim_size=hs[i + 1].shape[1], reduce="sum"))
        zs = [z0 if bottom_mask is None and (self.training or not cfg.nonnegative) else
              (values[0] - mean[0][None, :, None]) / sd[0][None, :, None]]
        zs += [(v - mean[i][None, :, None]) / sd[i][None, :, None] for i, v in enumerate(values) if i > 0]
        return TowerOutput(values, zs, attention)
