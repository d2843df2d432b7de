"""BERT-Tiny with LoRA, split into the device part and the frozen dense projections.

The model is BERT (Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers",
NAACL 2019; BERT-Tiny of Turc et al., "Well-Read Students Learn Better", arXiv 1908.08962:
L=2, H=128, A=2, FFN=512) with LoRA adapters (Hu et al., "LoRA: Low-Rank Adaptation of Large
Language Models", ICLR 2022) and a classification head, written so that every frozen dense
projection goes through a *projector* (spec section 1):

* :class:`BertDevice` (a ``torch.nn.Module``) is what the device holds: embeddings, LayerNorms,
  attention score maths, softmax, GELU, tanh, the LoRA adapters and the classifier head.
* :data:`FrozenWeights` (``{name: (W [d_in, d_out], b [d_out])}``, numpy float64) is what the
  server holds: the frozen projections ``layer{i}.{kind}`` (kind: query, key, value,
  attention_output, ffn_in, ffn_out) and ``pooler``. Note the row-vector convention
  ``Y = X W + b`` (HF stores ``W^T``).
* A projector maps ``(name, X [T, d_in]) -> X W + b``, differentiably in ``X``:
  :class:`PlainProjector` computes it in clear (the plaintext reference),
  :class:`RemoteProjector` sends it through the encrypted protocol (see ``protocol.py``).

An adapted projection computes ``Y = X W0 + b0 + (alpha / r) X A B`` (Hu et al. eq. 3), with
``A [d_in, r] ~ N(0, 1/r)`` and ``B [r, d_out]`` zero by default (``b_init_std`` > 0 makes
the first step's ``dL/dA`` non-zero, which the encrypted-vs-plaintext check needs).

Differences from HF ``BertModel``: dropout only when the caller passes a seeded
:class:`Dropout` (off by default: a step must be reproducible so that an encrypted step can be
compared with a plaintext one; with the same :class:`Dropout` seed every mode draws the same
masks, on the device, in clear), and seeded random *biases*
(``N(0, initializer_range)``, HF uses zeros) so that every term of ``X W + b`` is exercised.
Loading real weights (:func:`load_hf_weights`) reproduces HF ``BertModel`` outputs exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from privtuner.errors import MissingDependencyError, ScenarioError

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("torch", "fhe", "the BERT-Tiny LoRA model") from exc

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

#: Frozen dense projections of one encoder layer, in forward order.
LAYER_PROJECTIONS: tuple[str, ...] = (
    "query",
    "key",
    "value",
    "attention_output",
    "ffn_in",
    "ffn_out",
)
#: What the classifier head reads: ``cls`` (the tanh pooler projection of the first token, as
#: HF ``BertModel``) or ``mean`` (the mean of the attended tokens' last hidden states, no
#: pooler projection, as sentence-transformers).
POOLINGS: tuple[str, ...] = ("cls", "mean")
#: The classifier head: ``linear`` (one dense layer on the pooled vector, HF
#: ``BertForSequenceClassification``) or ``mlp`` (dense H x H, tanh, dropout, dense: HF
#: ``RobertaClassificationHead``, the head the LoRA paper trains on RoBERTa, Hu et al. 2022).
HEADS: tuple[str, ...] = ("linear", "mlp")
#: Projections a LoRA adapter may target (per layer; the pooler is not adapted).
LORA_TARGETS: tuple[str, ...] = LAYER_PROJECTIONS

#: Frozen weights of the server: name -> (W [d_in, d_out], b [d_out]) in float64.
FrozenWeights = dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]


@dataclass(frozen=True)
class BertConfig:
    """The fields of a HF ``config.json`` this model uses (defaults: BERT-Tiny, uncased)."""

    vocab_size: int = 30522
    hidden_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 512
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0
    initializer_range: float = 0.02

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def projection_names(self) -> list[str]:
        """Frozen projections in forward order: ``layer{i}.{kind}`` ..., ``pooler``."""
        names = [f"layer{i}.{k}" for i in range(self.num_hidden_layers) for k in LAYER_PROJECTIONS]
        return [*names, "pooler"]

    def projection_shape(self, name: str) -> tuple[int, int]:
        """``(d_in, d_out)`` of a frozen projection."""
        h, f = self.hidden_size, self.intermediate_size
        kind = name.split(".")[-1]
        if kind == "ffn_in":
            return h, f
        if kind == "ffn_out":
            return f, h
        return h, h

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate_config(cfg: BertConfig, source: str | None = None) -> BertConfig:
    """Check a :class:`BertConfig`; raise :class:`ScenarioError` listing every bad field."""
    problems: list[str] = []
    for name in (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
        "type_vocab_size",
    ):
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            problems.append(f"{name}: must be a positive integer (got {v!r})")
    if not problems and cfg.hidden_size % cfg.num_attention_heads:
        problems.append(
            f"hidden_size: must be divisible by num_attention_heads={cfg.num_attention_heads} "
            f"(got {cfg.hidden_size})"
        )
    if cfg.hidden_act not in ("gelu",):
        problems.append(f"hidden_act: only 'gelu' (erf GELU) is supported (got {cfg.hidden_act!r})")
    if not (0 < cfg.layer_norm_eps < 1):
        problems.append(f"layer_norm_eps: must be in (0, 1) (got {cfg.layer_norm_eps!r})")
    if not (0 < cfg.initializer_range < 1):
        problems.append(f"initializer_range: must be in (0, 1) (got {cfg.initializer_range!r})")
    if problems:
        raise ScenarioError(problems, source=source)
    return cfg


def load_config(path: str | Path | None = None) -> BertConfig:
    """Read a HF-style ``config.json``; ``None`` gives the built-in BERT-Tiny values.

    Unknown keys of the JSON (``architectures``, ``torch_dtype``, ...) are ignored; missing
    ones take the BERT-Tiny defaults.
    """
    if path is None:
        return validate_config(BertConfig())
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ScenarioError([f"cannot read model config: {exc}"], source=str(p)) from exc
    if not isinstance(data, dict):
        raise ScenarioError(["model config must be a JSON object"], source=str(p))
    known = {f.name for f in fields(BertConfig)}
    return validate_config(BertConfig(**{k: v for k, v in data.items() if k in known}), str(p))


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapters: rank r, scaling alpha (update ``(alpha/r) X A B``), target projections."""

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("query", "value")
    b_init_std: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.rank, int) or self.rank < 1:
            problems.append(f"lora.rank: must be a positive integer (got {self.rank!r})")
        if not self.alpha > 0:
            problems.append(f"lora.alpha: must be > 0 (got {self.alpha!r})")
        bad = [t for t in self.targets if t not in LORA_TARGETS]
        if bad or len(set(self.targets)) != len(self.targets):
            problems.append(
                f"lora.targets: each one of {', '.join(LORA_TARGETS)}, no repeats "
                f"(got {list(self.targets)})"
            )
        if not self.b_init_std >= 0:
            problems.append(f"lora.b_init_std: must be >= 0 (got {self.b_init_std!r})")
        if problems:
            raise ScenarioError(problems)

    @property
    def scaling(self) -> float:
        return float(self.alpha) / self.rank


class Dropout:
    """Seeded dropout of a training step, the masks HF BERT draws (Srivastava et al., JMLR 2014;
    Devlin et al. 2019): ``p_hidden`` on the embeddings, on the attention-output and FFN-output
    projections before their residual sums, and on the pooled vector before the head (HF
    ``BertForSequenceClassification`` with ``classifier_dropout`` unset); ``p_attention`` on the
    attention probabilities. Kept entries are scaled by ``1 / (1 - p)`` (inverted dropout).

    The masks are drawn from ``generator`` in forward order, on the device and in clear, and
    never depend on the projector: with the same seed a plain, simulated and encrypted step
    drop the same entries (the server never sees a mask; the encrypted projections of a
    dropped-out input carry its zeros like any other value)."""

    def __init__(self, p_hidden: float, p_attention: float, generator: torch.Generator) -> None:
        for name, p in (("p_hidden", p_hidden), ("p_attention", p_attention)):
            if not 0.0 <= p < 1.0:
                raise ScenarioError([f"dropout {name}: must be in [0, 1) (got {p!r})"])
        self.p_hidden = float(p_hidden)
        self.p_attention = float(p_attention)
        self.generator = generator

    @staticmethod
    def seeded(p_hidden: float, p_attention: float, seed: int) -> Dropout:
        return Dropout(p_hidden, p_attention, torch.Generator().manual_seed(int(seed)))

    def apply(self, x: torch.Tensor, p: float) -> torch.Tensor:
        """``x`` with each entry zeroed with probability ``p``, the others scaled by
        ``1 / (1 - p)``."""
        if p == 0.0:
            return x
        keep = torch.rand(x.shape, generator=self.generator, dtype=x.dtype) >= p
        return x * keep.to(x.dtype) * (1.0 / (1.0 - p))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x, self.p_hidden)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x, self.p_attention)


# --------------------------------------------------------------------------- projectors


class Projector(Protocol):
    """A frozen projection ``X W + b``, differentiable in ``X`` ([T, d_in] -> [T, d_out])."""

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor: ...


class PlainProjector:
    """Plaintext projector over :data:`FrozenWeights` (the reference the protocol must match)."""

    def __init__(
        self,
        weights: Mapping[str, tuple[NDArray[np.float64], NDArray[np.float64]]],
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self._w = {
            k: (torch.tensor(w, dtype=dtype), torch.tensor(b, dtype=dtype))
            for k, (w, b) in weights.items()
        }

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        w, b = self._w[name]
        return x @ w + b


class NumpyProjectionBackend(Protocol):
    """What :class:`RemoteProjector` needs: the two remote products on float64 arrays."""

    def project_forward(self, name: str, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """``X W + b`` for ``X [T, d_in]``."""
        ...

    def project_backward(self, name: str, grad_y: NDArray[np.float64]) -> NDArray[np.float64]:
        """``dL/dX = dL/dY W^T`` for ``dL/dY [T, d_out]``."""
        ...


class _RemoteProjection(torch.autograd.Function):
    """Autograd function whose forward and backward run on the (encrypted) server.

    Forward ``Y = X W + b``; backward ``dL/dX = dL/dY W^T`` (W frozen: no weight gradient).
    The backward is skipped when ``X`` needs no gradient (e.g. the first layer's Q/K/V,
    whose input, the embedding output, is frozen: spec section 1).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, backend: Any, name: str) -> torch.Tensor:
        ctx.backend = backend
        ctx.name = name
        y = backend.project_forward(name, x.detach().to(torch.float64).cpu().numpy())
        return torch.from_numpy(np.ascontiguousarray(y)).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        gx = ctx.backend.project_backward(ctx.name, grad_y.detach().to(torch.float64).cpu().numpy())
        return torch.from_numpy(np.ascontiguousarray(gx)).to(grad_y.dtype), None, None


class RemoteProjector:
    """Projector whose products are computed remotely by ``backend`` (e.g. a ``DeviceClient``)."""

    def __init__(self, backend: NumpyProjectionBackend) -> None:
        self.backend = backend

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = _RemoteProjection.apply(x, self.backend, name)
        return out


# --------------------------------------------------------------------------- the model


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class BertDevice(nn.Module):
    """The device's part of BERT + LoRA + classifier head (everything but frozen projections).

    ``forward(input_ids [B, S], attention_mask [B, S], token_type_ids [B, S] | None,
    projector) -> logits [B, num_labels]``. Embeddings and LayerNorms are frozen
    (``requires_grad=False``); only LoRA ``A``/``B`` and the head are trainable.
    """

    def __init__(self, config: BertConfig, lora: LoraConfig, num_labels: int = 2) -> None:
        super().__init__()
        if num_labels < 1:
            raise ScenarioError([f"num_labels: must be >= 1 (got {num_labels})"])
        self.config = config
        self.lora = lora
        self.num_labels = num_labels
        h = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        self.emb_ln = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.attn_ln = nn.ModuleList(
            [nn.LayerNorm(h, eps=config.layer_norm_eps) for _ in range(config.num_hidden_layers)]
        )
        self.out_ln = nn.ModuleList(
            [nn.LayerNorm(h, eps=config.layer_norm_eps) for _ in range(config.num_hidden_layers)]
        )
        self.lora_a = nn.ParameterDict()
        self.lora_b = nn.ParameterDict()
        for i in range(config.num_hidden_layers):
            for t in lora.targets:
                d_in, d_out = config.projection_shape(t)
                key = f"layer{i}_{t}"
                self.lora_a[key] = nn.Parameter(torch.zeros(d_in, lora.rank))
                self.lora_b[key] = nn.Parameter(torch.zeros(lora.rank, d_out))
        self.head = nn.Linear(h, num_labels)
        self.head_dense: nn.Linear | None = None
        self.pooling = "cls"
        for p in self.frozen_parameters():
            p.requires_grad_(False)

    def set_pooling(self, pooling: str) -> None:
        """What the head reads (:data:`POOLINGS`). ``mean`` needs no ``pooler`` projection: the
        device averages its own hidden states, so a step sends one projection fewer."""
        if pooling not in POOLINGS:
            raise ScenarioError([f"pooling: one of {', '.join(POOLINGS)} (got {pooling!r})"])
        self.pooling = pooling

    def set_head(self, head: str, seed: int = 0) -> None:
        """The classifier head (:data:`HEADS`). ``mlp`` adds a trainable dense ``H x H`` layer
        before :attr:`head`, drawn ``~ N(0, initializer_range^2)`` (HF init) from numpy
        ``Generator([seed, 4])``, bias 0, in the module's dtype; the other draws of the model
        are unchanged. (In :mod:`privtuner.accuracy` that key is also the fifth epoch's batch
        order, ``[seed, epoch]``: an overlap of two unrelated uses of one stream, kept so that
        the measured mlp-head runs reproduce.) Like the rest of the head it runs on the device
        in clear."""
        if head not in HEADS:
            raise ScenarioError([f"head: one of {', '.join(HEADS)} (got {head!r})"])
        if head == "linear":
            self.head_dense = None
            return
        h = self.config.hidden_size
        rng = np.random.default_rng([seed, 4])
        dense = nn.Linear(h, h).to(self.head.weight.dtype)
        with torch.no_grad():
            w = rng.normal(0.0, self.config.initializer_range, size=(h, h))
            dense.weight.copy_(torch.from_numpy(w))
            dense.bias.zero_()
        self.head_dense = dense

    def frozen_parameters(self) -> list[nn.Parameter]:
        mods: list[nn.Module] = [
            self.word_embeddings,
            self.position_embeddings,
            self.token_type_embeddings,
            self.emb_ln,
            self.attn_ln,
            self.out_ln,
        ]
        return [p for m in mods for p in m.parameters()]

    def trainable_named_parameters(self) -> dict[str, nn.Parameter]:
        """LoRA and head parameters by name (what the optimiser updates)."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def _dense(self, projector: Projector, layer: int, kind: str, x: torch.Tensor) -> torch.Tensor:
        y = projector(f"layer{layer}.{kind}", x)
        key = f"layer{layer}_{kind}"
        if key in self.lora_a:
            y = y + self.lora.scaling * ((x @ self.lora_a[key]) @ self.lora_b[key])
        return y

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        projector: Projector,
        dropout: Dropout | None = None,
    ) -> torch.Tensor:
        """Logits ``[B, num_labels]`` = head(pooler output) (:meth:`set_head`: with ``mlp``,
        head(dropout(tanh(dense(dropout(pooled))))), as ``RobertaClassificationHead``);
        ``dropout``: a training step's seeded masks (none by default)."""
        _, pooled = self.encode(input_ids, attention_mask, token_type_ids, projector, dropout)
        if dropout is not None:
            pooled = dropout.hidden(pooled)
        if self.head_dense is not None:
            pooled = torch.tanh(self.head_dense(pooled))
            if dropout is not None:
                pooled = dropout.hidden(pooled)
        logits: torch.Tensor = self.head(pooled)
        return logits

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        projector: Projector,
        dropout: Dropout | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """BERT encoder: ``(sequence output [B, S, H], pooler output [B, H])``, as HF
        ``BertModel`` (post-LN layers, erf GELU, tanh pooler over the first token), or with
        :meth:`set_pooling` ``("mean")`` the mean of the attended tokens' hidden states as the
        pooled output (the pooling all-MiniLM-L6-v2 was trained with, Reimers-Gurevych,
        EMNLP 2019; its checkpoint's pooler is untrained: zero bias). ``dropout``: where HF BERT
        drops (:class:`Dropout`), none by default."""
        cfg = self.config
        b, s = input_ids.shape
        if s > cfg.max_position_embeddings:
            raise ScenarioError(
                [
                    f"sequence length: at most max_position_embeddings="
                    f"{cfg.max_position_embeddings} (got {s})"
                ]
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        pos = torch.arange(s, device=input_ids.device)
        hid = self.emb_ln(
            self.word_embeddings(input_ids)
            + self.position_embeddings(pos)[None]
            + self.token_type_embeddings(token_type_ids)
        )
        drop_h = dropout.hidden if dropout is not None else _identity
        drop_a = dropout.attention if dropout is not None else _identity
        hid = drop_h(hid)
        dtype = hid.dtype
        # additive mask as in HF BertModel: 0 where attended, finfo.min where padded
        neg = (1.0 - attention_mask.to(dtype))[:, None, None, :] * torch.finfo(dtype).min
        nh, dh, hsz = cfg.num_attention_heads, cfg.head_dim, cfg.hidden_size
        for i in range(cfg.num_hidden_layers):
            x = hid.reshape(b * s, hsz)
            q = self._dense(projector, i, "query", x)
            k = self._dense(projector, i, "key", x)
            v = self._dense(projector, i, "value", x)

            def heads(t: torch.Tensor) -> torch.Tensor:
                return t.reshape(b, s, nh, dh).transpose(1, 2)

            scores = heads(q) @ heads(k).transpose(-1, -2) / float(np.sqrt(dh)) + neg
            probs = drop_a(torch.softmax(scores, dim=-1))
            ctx = (probs @ heads(v)).transpose(1, 2).reshape(b * s, hsz)
            a = drop_h(self._dense(projector, i, "attention_output", ctx))
            h1 = self.attn_ln[i](a + x)
            f = F.gelu(self._dense(projector, i, "ffn_in", h1))
            o = drop_h(self._dense(projector, i, "ffn_out", f))
            hid = self.out_ln[i](o + h1).reshape(b, s, hsz)
        if self.pooling == "mean":
            m = attention_mask.to(dtype)[:, :, None]
            return hid, (hid * m).sum(1) / m.sum(1).clamp_min(1.0)
        pooled = torch.tanh(projector("pooler", hid[:, 0]))
        return hid, pooled


def init_model(
    config: BertConfig,
    lora: LoraConfig | None = None,
    num_labels: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[BertDevice, FrozenWeights]:
    """A seeded random BERT + LoRA + head: ``(device module, server's frozen weights)``.

    Draws (numpy ``Generator(seed)``): embeddings, projection weights and biases
    ``~ N(0, initializer_range^2)`` (HF init, but non-zero biases), LayerNorm ``gamma=1,
    beta=0``, the padding row of the word embeddings zero, LoRA ``A ~ N(0, 1/r)``,
    ``B ~ N(0, b_init_std^2)`` (zero by default), head ``~ N(0, initializer_range^2)``, bias 0.
    """
    lora = lora or LoraConfig()
    rng = np.random.default_rng(seed)
    std = config.initializer_range
    model = BertDevice(config, lora, num_labels).to(dtype)

    def normal(*shape: int, scale: float = std) -> torch.Tensor:
        return torch.from_numpy(rng.normal(0.0, scale, size=shape))

    with torch.no_grad():
        for emb in (model.word_embeddings, model.position_embeddings, model.token_type_embeddings):
            emb.weight.copy_(normal(*emb.weight.shape))
        if config.pad_token_id is not None and 0 <= config.pad_token_id < config.vocab_size:
            model.word_embeddings.weight[config.pad_token_id].zero_()
        weights: FrozenWeights = {}
        for name in config.projection_names():
            d_in, d_out = config.projection_shape(name)
            weights[name] = (rng.normal(0.0, std, (d_in, d_out)), rng.normal(0.0, std, d_out))
        for key in model.lora_a:
            model.lora_a[key].copy_(
                normal(*model.lora_a[key].shape, scale=1.0 / np.sqrt(lora.rank))
            )
            if lora.b_init_std > 0:
                model.lora_b[key].copy_(normal(*model.lora_b[key].shape, scale=lora.b_init_std))
        model.head.weight.copy_(normal(*model.head.weight.shape))
        model.head.bias.zero_()
    return model, weights


# --------------------------------------------------------------------------- HF weights

_HF_LAYER = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention_output": "attention.output.dense",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
}


def _read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    st = folder / "model.safetensors"
    if st.is_file():
        from safetensors.torch import load_file

        return dict(load_file(str(st)))
    pt = folder / "pytorch_model.bin"
    if pt.is_file():
        sd = torch.load(str(pt), map_location="cpu", weights_only=True)
        return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    raise ScenarioError(
        ["no model.safetensors or pytorch_model.bin in the weights folder"], source=str(folder)
    )


def load_hf_weights(
    folder: str | Path,
    lora: LoraConfig | None = None,
    num_labels: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[BertDevice, FrozenWeights]:
    """BERT weights from a local HF folder (``config.json`` + ``model.safetensors`` or
    ``pytorch_model.bin``, state-dict names of ``BertModel``, optionally prefixed ``bert.``).

    LoRA adapters and (unless the checkpoint has a matching ``classifier``) the head are drawn
    as in :func:`init_model`. Never contacts a hub.
    """
    folder = Path(folder)
    config = load_config(folder / "config.json")
    model, weights = init_model(config, lora, num_labels, seed, dtype=torch.float64)
    sd = {k.removeprefix("bert."): v for k, v in _read_state_dict(folder).items()}
    # old TF-converted checkpoints name LayerNorm parameters gamma/beta
    sd = {
        k.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
            "LayerNorm.beta", "LayerNorm.bias"
        ): v
        for k, v in sd.items()
    }
    missing: list[str] = []

    def take(key: str, shape: Sequence[int]) -> torch.Tensor:
        t = sd.get(key)
        if t is None or tuple(t.shape) != tuple(shape):
            missing.append(
                f"{key}: expected shape {tuple(shape)} "
                f"(got {None if t is None else tuple(t.shape)})"
            )
            return torch.zeros(tuple(shape), dtype=torch.float64)
        return t.detach().to(torch.float64)

    def load_ln(ln: Any, prefix: str) -> None:
        ln.weight.copy_(take(prefix + ".weight", ln.weight.shape))
        ln.bias.copy_(take(prefix + ".bias", ln.bias.shape))

    with torch.no_grad():
        for attr in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
            emb = getattr(model, attr)
            emb.weight.copy_(take(f"embeddings.{attr}.weight", emb.weight.shape))
        load_ln(model.emb_ln, "embeddings.LayerNorm")
        for i in range(config.num_hidden_layers):
            pre = f"encoder.layer.{i}."
            load_ln(model.attn_ln[i], pre + "attention.output.LayerNorm")
            load_ln(model.out_ln[i], pre + "output.LayerNorm")
            for kind, hf in _HF_LAYER.items():
                d_in, d_out = config.projection_shape(kind)
                w = take(pre + hf + ".weight", (d_out, d_in))
                b = take(pre + hf + ".bias", (d_out,))
                weights[f"layer{i}.{kind}"] = (w.T.numpy().copy(), b.numpy().copy())
        h = config.hidden_size
        w = take("pooler.dense.weight", (h, h))
        weights["pooler"] = (w.T.numpy().copy(), take("pooler.dense.bias", (h,)).numpy().copy())
        cw, cb = sd.get("classifier.weight"), sd.get("classifier.bias")
        if cw is not None and cb is not None and tuple(cw.shape) == (num_labels, h):
            model.head.weight.copy_(cw)
            model.head.bias.copy_(cb)
    if missing:
        raise ScenarioError([f"missing or mis-shaped weight {m}" for m in missing], str(folder))
    return model.to(dtype), weights


# --------------------------------------------------------------------------- tokenizer


def load_tokenizer(vocab_path: str | Path, do_lower_case: bool = True) -> Any:
    """``transformers.BertTokenizer`` from a local WordPiece vocab file (never a hub).

    One token per line, the id is the line number (as ``transformers`` ``load_vocab``).
    """
    p = Path(vocab_path)
    if not p.is_file():
        raise ScenarioError([f"vocab file not found (got {str(p)!r})"])
    from privtuner.errors import require

    transformers: Any = require("transformers", purpose="the BERT tokenizer")
    import inspect

    cls = transformers.BertTokenizer
    if "vocab_file" in inspect.signature(cls.__init__).parameters:  # transformers < 5
        return cls(vocab_file=str(p), do_lower_case=do_lower_case)
    # transformers >= 5 silently ignores ``vocab_file=`` (it lands in **kwargs and the
    # tokenizer keeps its 5 special tokens only): pass the vocabulary itself.
    vocab = {}
    for index, token in enumerate(p.read_text(encoding="utf-8").splitlines()):
        vocab[token] = index
    return cls(vocab=vocab, do_lower_case=do_lower_case)


def encode_batch(
    tokenizer: Any, sentences: Sequence[str], seq_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize, pad and truncate to ``seq_len``: ``(input_ids [B, S], attention_mask [B, S])``."""
    if seq_len < 2:
        raise ScenarioError([f"seq_len: must be >= 2 ([CLS] and [SEP]) (got {seq_len})"])
    enc = tokenizer(
        list(sentences),
        padding="max_length",
        truncation=True,
        max_length=seq_len,
        return_tensors="pt",
    )
    return enc["input_ids"], enc["attention_mask"]


def write_vocab(path: str | Path, words: Sequence[str]) -> Path:
    """Write a WordPiece vocab file: the BERT special tokens then ``words`` (for tests and
    offline runs without the real uncased vocab)."""
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    seen = set(special)
    out = list(special)
    for w in words:
        if w not in seen:
            seen.add(w)
            out.append(w)
    p = Path(path)
    p.write_text("\n".join(out) + "\n")
    return p
