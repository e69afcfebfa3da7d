"""The tower: LSTM per level, attention pooling child → parent, a top-down pass.

Shapes use ``B`` issue hours, ``N_l`` units of level ``l``, ``L`` input hours,
``H`` horizons, ``C`` target channels. Nodes sit on dimension 1, so one graph
serves a whole batch and pooling is a scatter over that dimension.

Coherence is by construction: only the bottom level has a density head; every
level's forecast is the sum of its bottom descendants' forecasts, so children
sum to their parent exactly (see ``docs/model.md``). Upper levels still shape
the forecast: their own encoders, the attention pooling and the top-down pass
feed context to the bottom head, and the training loss is taken at every level.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter, softmax


class TemporalEncoder(nn.Module):
    """An LSTM over each unit's input window; returns the last hidden state.

    Parameters
    ----------
    in_channels
        Features per hour.
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


@dataclass
class TowerConfig:
    """Hyper-parameters of a :class:`Tower` (all explicit, all recorded with each run)."""

    levels: tuple[str, ...]
    seq_channels: int
    aux_channels: tuple[int, ...]
    ext_channels: int
    out_channels: int
    horizons: int
    hidden: int = 32
    dropout: float = 0.0
    top_down: bool = True
    neighbours: bool = True

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["levels"] = list(self.levels)
        d["aux_channels"] = list(self.aux_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> TowerConfig:
        d = dict(d)
        d["levels"] = tuple(d["levels"])  # type: ignore[arg-type]
        d["aux_channels"] = tuple(d["aux_channels"])  # type: ignore[arg-type]
        return cls(**d)  # type: ignore[arg-type]


@dataclass
class TowerOutput:
    """Forecasts at every level (scaled by each level's scale) and risk scores in ``[0, 1]``."""

    density: list[Tensor]  # per level (B, N_l, H, C)
    risk: list[Tensor]  # per level (B, N_l, H)
    attention: list[Tensor]  # per level above the bottom (B, N_child)


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
        self.encoders = nn.ModuleList([TemporalEncoder(config.seq_channels, d) for _ in range(n)])
        self.aux = nn.ModuleList([nn.Linear(a, d) for a in config.aux_channels])
        self.ext = nn.Linear(config.ext_channels, d)
        self.pools = nn.ModuleList([ChildAttentionPool(d) for _ in range(n - 1)])
        self.mix = nn.ModuleList([NeighbourMix(d) for _ in range(n)])
        self.norms = nn.ModuleList([nn.LayerNorm(d) for _ in range(n)])
        self.down = nn.ModuleList([nn.Linear(d, d) for _ in range(n - 1)])
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Sequential(nn.Linear(d + config.aux_channels[0], 2 * d), nn.ReLU(),
                                  nn.Linear(2 * d, config.horizons * config.out_channels))
        self.risk = nn.ModuleList([nn.Linear(d, config.horizons) for _ in range(n)])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for group in (self.encoders, self.aux, self.pools, self.mix, self.norms, self.down, self.risk):
            for m in group:
                m.reset_parameters()
        self.ext.reset_parameters()
        for m in self.head:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        # the forecast starts as persistence (the residual on the last hour) and learns from there
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def encode(self, seq: list[Tensor], aux: list[Tensor], ext: Tensor, parent: list[Tensor],
               neighbours: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Bottom-up then top-down: one embedding ``(B, N_l, D)`` per level, and the attention weights."""
        e = self.ext(ext)[:, None]
        hs: list[Tensor] = []
        attention: list[Tensor] = []
        for i in range(len(seq)):
            h, _ = self.encoders[i](seq[i])
            h = h + self.aux[i](aux[i]) + e
            if i > 0:
                pooled, alpha = self.pools[i - 1](hs[i - 1], h, parent[i - 1])
                h = h + pooled
                attention.append(alpha)
            if self.config.neighbours:
                h = h + self.mix[i](h, neighbours[i])
            hs.append(self.norms[i](F.relu(h)))
        if self.config.top_down:
            for i in range(len(seq) - 2, -1, -1):
                hs[i] = hs[i] + self.down[i](hs[i + 1])[:, parent[i]]
        return hs, attention

    def forward(self, seq: list[Tensor], aux: list[Tensor], ext: Tensor, parent: list[Tensor],
                neighbours: list[Tensor], scales: Tensor, *, bottom_mask: Tensor | None = None) -> TowerOutput:
        """Forecast every level.

        Parameters
        ----------
        seq, aux
            Per level: input windows ``(B, N, L, F)`` and per-unit vectors ``(B, N, A)``.
        ext
            External features of the target hours ``(B, E)``.
        parent
            Child → parent index for every level but the top.
        neighbours
            Same-level ``edge_index`` per level.
        scales
            ``(n_levels, C)``: each level's scale; forecasts come back divided by it.
        bottom_mask
            Optional ``(N_0,)`` 0/1 multiplier of the bottom forecasts (closures).
        """
        cfg = self.config
        hs, attention = self.encode(seq, aux, ext, parent, neighbours)
        b, n0 = hs[0].shape[:2]
        last = seq[0][:, :, -1, : cfg.out_channels]
        delta = self.head(torch.cat([self.dropout(hs[0]), aux[0]], dim=-1)).reshape(b, n0, cfg.horizons,
                                                                                    cfg.out_channels)
        bottom = (last[:, :, None] + delta) * scales[0]  # original units
        if not self.training:
            bottom = bottom.clamp_min(0.0)
        if bottom_mask is not None:
            bottom = bottom * bottom_mask[None, :, None, None]
        density = [bottom]
        for i in range(len(hs) - 1):
            density.append(scatter(density[-1], parent[i], dim=1, dim_size=hs[i + 1].shape[1], reduce="sum"))
        density = [d / scales[i] for i, d in enumerate(density)]
        # the risk heads read the embeddings without steering them: a classification loss
        # must not pull the shared encoders away from the density forecast
        risk = [torch.sigmoid(self.risk[i](h.detach())) for i, h in enumerate(hs)]
        return TowerOutput(density, risk, attention)
