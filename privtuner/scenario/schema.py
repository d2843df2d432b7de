"""Pydantic schema of a scenario file (``schema_version: 1``).

Every model is frozen and rejects unknown keys. Every field name carries its unit; defaults are
those of the specification (``system-model.md`` section 6). ``privtuner schema`` prints the JSON
Schema generated from these models, for editors.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

SCHEMA_VERSION = 1

#: Ring degrees N of the CKKS catalogue.
RING_DEGREES = (4096, 8192, 16384, 32768)
#: ``$id`` of the JSON Schema of this schema version.
SCHEMA_ID = f"urn:privtuner:scenario-schema:{SCHEMA_VERSION}"
#: How numbers are read: stated in the JSON Schema (editors and other tools read it).
NUMBER_RULE = (
    "Numbers are read as YAML 1.2 writes them: 1e7, 2.4e9 and -3E-2 are numbers (PyYAML's "
    "default YAML 1.1 resolver reads an exponent without a dot as a string; parse with "
    "privtuner.scenario.parse_yaml_text, or any YAML 1.2 parser, before checking a file "
    "against this schema). Numbers are never given as strings or booleans."
)

#: Largest ``fhe.min_security_bits`` [bits]: the top of the HE standard's security table, where
#: the ``security_bits`` metric saturates (``costmodels.privacy.SECURITY_CAP_BITS``, the same
#: number; a test keeps them equal).
MAX_SECURITY_BITS = 256.0

#: The scale bits ``fhe.scale_bits_min`` / ``fhe.scale_bits_max`` may give [bits].
SCALE_BITS_RANGE = (14, 60)

#: Longest scenario name (also of a sweep point's generated name) [characters].
NAME_MAX_CHARS = 200


class _Frozen(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, validate_default=True
    )


def _kind(v: Any) -> str:
    return {bool: "a boolean", str: "a string"}.get(type(v), f"a {type(v).__name__}")


def _number(v: Any) -> Any:
    """Strict numbers: an int or float as written, never a boolean (``true`` is not 1 Hz) or a
    string (``"1e7"``: write numbers unquoted)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ValueError(f"must be a number, not {_kind(v)}")
    return v


#: A number (int or float, no boolean or string); finite (the models refuse inf and nan).
Float = Annotated[float, BeforeValidator(_number)]
#: An integer (an integral float such as ``1e3`` is accepted; no boolean or string).
Int = Annotated[int, BeforeValidator(_number)]
#: A boolean written as ``true``/``false`` (no ``yes``, ``1`` or ``"true"``).
Bool = Annotated[bool, Strict()]
FiniteFloat = Annotated[Float, Field(allow_inf_nan=False)]


class Uniform(_Frozen):
    """A per-device value drawn uniformly in ``[low, high]`` (seeded)."""

    low: FiniteFloat
    high: FiniteFloat

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f"high must be >= low (got low={self.low:g}, high={self.high:g})")
        return self


# A per-device parameter: one number for every device, or a uniform distribution.
PerDevice = Float | Uniform


def _per_device_schema(lo: float, hi: float) -> dict[str, Any]:
    """The JSON Schema of a per-device parameter in ``[lo, hi]`` (the bounds the field
    validators enforce): a number, or ``{low, high}`` with both in range."""
    bounded = {"type": "number", "minimum": lo, "maximum": hi}
    uniform = {
        "type": "object",
        "properties": {"low": bounded, "high": bounded},
        "required": ["low", "high"],
        "additionalProperties": False,
        "description": "Uniform distribution in [low, high] (high >= low), seeded.",
    }
    return {"anyOf": [bounded, uniform]}


class SystemSpec(_Frozen):
    """Radio system: FDMA uplink and channel model (spec section 4)."""

    bandwidth_hz: Float = Field(
        1.0e7, ge=1e3, le=1e11, description="Total uplink bandwidth B [Hz]."
    )
    noise_dbm_per_hz: Float = Field(
        -174.0, ge=-220, le=-100, description="Noise power spectral density N0 [dBm/Hz]."
    )
    cell_radius_m: Float = Field(
        500.0, ge=1, le=1e5, description="Radius of the disc devices are dropped in [m]."
    )
    min_distance_m: Float = Field(
        10.0, ge=0.1, le=1e5, description="Minimum device-server distance of the random drop [m]."
    )
    path_loss_intercept_db: Float = Field(
        128.1, ge=0, le=300, description="Path loss at 1 km: PL = a + b log10(d_km) [dB]."
    )
    path_loss_slope_db: Float = Field(
        37.6, ge=0, le=100, description="Path-loss slope b per decade of distance [dB]."
    )
    shadowing_db: Float = Field(
        8.0, ge=0, le=30, description="Std. dev. of log-normal shadowing [dB]; 0 disables it."
    )
    fading: Literal["rayleigh", "none"] = Field(
        "rayleigh", description="Small-scale fading: Rayleigh (|h|^2 ~ Exp(1)) or none."
    )

    @model_validator(mode="after")
    def _radius(self) -> SystemSpec:
        if self.min_distance_m >= self.cell_radius_m:
            raise ValueError(
                f"min_distance_m must be < cell_radius_m (got {self.min_distance_m} >= "
                f"{self.cell_radius_m})"
            )
        return self


class ExplicitDevice(_Frozen):
    """One device given explicitly: ``distance_m`` (channel drawn from it) or ``gain_db``."""

    distance_m: Float | None = Field(None, ge=0.1, le=1e5, description="Distance to server [m].")
    gain_db: Float | None = Field(
        None, ge=-250, le=0, description="Channel power gain g [dB] (path loss, shadowing, fading)."
    )
    p_max_dbm: Float | None = Field(None, ge=-30, le=40, description="Max transmit power [dBm].")
    f_max_hz: Float | None = Field(
        None, ge=1e6, le=1e11, description="Max device CPU frequency [Hz]."
    )
    kappa: Float | None = Field(
        None, ge=1e-35, le=1e-20, description="Device switched capacitance."
    )
    device_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="The planner's name of the device, passed through to every output; "
        "unique among the devices.",
    )

    @model_validator(mode="after")
    def _one_channel(self) -> ExplicitDevice:
        if (self.distance_m is None) == (self.gain_db is None):
            raise ValueError("give exactly one of distance_m or gain_db")
        return self


class DevicesSpec(_Frozen):
    """Devices: a random drop of ``count`` devices, or an explicit list (inline or CSV).

    Per-device parameters are a number (all devices) or ``{low, high}`` (uniform, seeded).
    Explicit devices take these values where they leave a column empty.
    """

    count: Int | None = Field(
        10,
        ge=1,
        le=1_000_000,
        description="Number of devices K of the random drop (default 10). With explicit or "
        "csv the list sets K: leave count out, or give the list's length.",
    )
    p_max_dbm: PerDevice = Field(
        23.0,
        description="Max transmit power p_max [dBm] (<= 40).",
        json_schema_extra=_per_device_schema(-30.0, 40.0),
    )
    f_max_hz: PerDevice = Field(
        1.5e9,
        description="Max device CPU frequency f_max [Hz].",
        json_schema_extra=_per_device_schema(1e6, 1e11),
    )
    kappa: PerDevice = Field(
        1e-28,
        description="Device switched capacitance kappa_d [J/(cycle Hz^2)].",
        json_schema_extra=_per_device_schema(1e-35, 1e-20),
    )
    explicit: list[ExplicitDevice] | None = Field(
        None, description="Explicit device list (replaces the random drop)."
    )
    csv: str | None = Field(
        None,
        description="CSV file of explicit devices, relative to the YAML file; columns: "
        "distance_m or gain_db, optional p_max_dbm, f_max_hz, kappa, device_id (text, "
        "unique).",
    )

    @field_validator("p_max_dbm")
    @classmethod
    def _pmax(cls, v: PerDevice) -> PerDevice:
        _check_range(v, -30.0, 40.0)
        return v

    @field_validator("f_max_hz")
    @classmethod
    def _fmax(cls, v: PerDevice) -> PerDevice:
        _check_range(v, 1e6, 1e11)
        return v

    @field_validator("kappa")
    @classmethod
    def _kappa(cls, v: PerDevice) -> PerDevice:
        _check_range(v, 1e-35, 1e-20)
        return v

    @model_validator(mode="before")
    @classmethod
    def _count_of_a_list(cls, data: Any) -> Any:
        """A device list without ``count``: no count (the default 10 is the random drop's), so
        that a count given with a list can be checked against its length."""
        if isinstance(data, dict) and "count" not in data:
            if data.get("explicit") is not None or data.get("csv") is not None:
                return {**data, "count": None}
        return data

    @model_validator(mode="after")
    def _source(self) -> DevicesSpec:
        if self.explicit is not None and self.csv is not None:
            raise ValueError("give at most one of explicit or csv")
        if self.explicit is not None and len(self.explicit) == 0:
            raise ValueError("explicit device list is empty")
        if self.explicit is None and self.csv is None and self.count is None:
            raise ValueError("count is required for a random drop (give count, explicit or csv)")
        if self.explicit is not None and self.count is not None:
            n = len(self.explicit)
            if self.count != n:
                raise field_error(
                    "DevicesSpec",
                    ("count",),
                    self.count,
                    f"contradicts the explicit list of {n} device{'s' * (n != 1)} (the list "
                    f"sets the number of devices: leave count out, or give {n})",
                )
        ids = [d.device_id for d in self.explicit or []]
        first: dict[str, int] = {}
        for i, device_id in enumerate(ids):
            if device_id is None:
                continue
            if device_id in first:
                raise field_error(
                    "DevicesSpec",
                    ("explicit", i, "device_id"),
                    device_id,
                    f"device ids must be unique: devices.explicit.{first[device_id]} has "
                    "this id too",
                )
            first[device_id] = i
        return self


def field_error(
    title: str, loc: tuple[str | int, ...], value: Any, message: str
) -> ValidationError:
    """A validation error of the field at ``loc`` inside a model (raised by a model validator
    that checks several fields, so that the problem names the field, not the model)."""
    detail = InitErrorDetails(
        type=PydanticCustomError("value_error", "{message}", {"message": message}),
        loc=loc,
        input=value,
    )
    return ValidationError.from_exception_data(title, [detail])


def _check_range(v: PerDevice, lo: float, hi: float) -> None:
    values = [v.low, v.high] if isinstance(v, Uniform) else [v]
    for x in values:
        if not (lo <= x <= hi):
            raise ValueError(f"must be in [{lo:g}, {hi:g}] (got {x:g})")


class ServerSpec(_Frozen):
    """Edge server (spec section 4)."""

    cpu_hz: Float = Field(
        5.0e10, ge=1e6, le=1e14, description="Total server CPU frequency F_s [Hz]."
    )
    kappa: Float = Field(
        1e-28, ge=1e-35, le=1e-20, description="Server switched capacitance kappa_s."
    )
    downlink_rate_bps: Float = Field(
        1.0e8, ge=1e3, le=1e12, description="Fixed downlink rate per device [bit/s] (latency only)."
    )


LoraTarget = Literal["query", "key", "value", "attention_output", "ffn_in", "ffn_out"]


class WorkloadSpec(_Frozen):
    """Fine-tuning workload: BERT-Tiny dims, LoRA, tokens per step (spec section 1)."""

    num_layers: Int = Field(2, ge=1, le=48, description="Transformer layers L.")
    hidden_size: Int = Field(128, ge=8, le=8192, description="Hidden size H.")
    intermediate_size: Int = Field(512, ge=8, le=32768, description="FFN inner size.")
    num_heads: Int = Field(
        2, ge=1, le=128, description="Attention heads A (must divide hidden_size)."
    )
    vocab_size: Int = Field(30522, ge=2, le=1_000_000, description="Vocabulary size.")
    include_pooler: Bool = Field(True, description="Count the pooler projection (H x H).")
    lora_rank: Int = Field(8, ge=1, le=1024, description="LoRA rank r.")
    lora_alpha: Float = Field(16.0, gt=0, le=1e4, description="LoRA alpha (scaling alpha/r).")
    lora_targets: tuple[LoraTarget, ...] = Field(
        ("query", "value"), min_length=1, description="Projections that carry LoRA adapters."
    )
    batch_size: Int = Field(8, ge=1, le=4096, description="Sequences per step.")
    sequence_length_tokens: Int = Field(64, ge=1, le=8192, description="Tokens per sequence.")
    steps_per_round: Int = Field(1, ge=1, le=100_000, description="Local steps per round E_r.")
    rounds: Int = Field(10, ge=1, le=1_000_000, description="Fine-tuning rounds.")

    @model_validator(mode="after")
    def _heads(self) -> WorkloadSpec:
        if self.hidden_size % self.num_heads:
            raise field_error(
                "WorkloadSpec",
                ("num_heads",),
                self.num_heads,
                f"must divide hidden_size {self.hidden_size} (each head has hidden_size / "
                "num_heads dimensions)",
            )
        return self

    @property
    def tokens_per_step(self) -> int:
        """Tokens per step T = batch_size x sequence_length_tokens."""
        return self.batch_size * self.sequence_length_tokens


class FheSpec(_Frozen):
    """CKKS catalogue restrictions (spec section 2)."""

    ring_degrees: tuple[Int, ...] = Field(
        (4096, 8192, 16384, 32768), min_length=1, description="Allowed ring degrees N."
    )
    scale_bits_min: Int = Field(
        20, ge=SCALE_BITS_RANGE[0], le=SCALE_BITS_RANGE[1], description="Smallest scale (bits)."
    )
    scale_bits_max: Int = Field(
        40, ge=SCALE_BITS_RANGE[0], le=SCALE_BITS_RANGE[1], description="Largest scale (bits)."
    )
    min_security_bits: Float = Field(
        128.0,
        ge=128,
        description="Minimum classical security [bits], in [128, 256]: 256 bits is the top of "
        "the HE standard's table, the most security any set is credited with (the "
        "security_bits metric saturates there).",
        json_schema_extra={"maximum": MAX_SECURITY_BITS},
    )
    min_precision_bits: Float = Field(
        20.0,
        ge=0,
        le=60,
        description="Minimum measured precision of an encrypted projection [bits] "
        "(-log2 of the max abs error). Scale-20 sets reach ~7 bits, too few for LoRA gradients.",
    )
    cost_model: str = Field(
        "default",
        description="Fitted cost model: 'default' (shipped) or a path to a model JSON file "
        "(relative to the YAML file).",
    )
    packing: Literal["interleaved", "column"] = Field(
        "interleaved",
        description="Ciphertext packing of the protocol: 'interleaved' (default; k features "
        "per ciphertext, two tokens per complex slot: every ciphertext carries N real values) "
        "or 'column' (the PrivTuner-style baseline: one feature of up to N/2 tokens per "
        "ciphertext).",
    )
    rescale: Literal["server", "device", "choose"] = Field(
        "server",
        description="Who rescales the server's products (a protocol option): 'server' "
        "(default; one SEAL rescale per output ciphertext, one-prime downloads), 'device' "
        "(the server returns the products unrescaled: less server work, downloads larger by "
        "the scale prime, two-prime decryptions on the device) or 'choose' (every set priced "
        "both ways; the optimiser picks per device, the device option's sets named "
        "'...+rescale=device').",
    )
    max_accuracy_loss_points: Float | None = Field(
        None,
        ge=0,
        le=100,
        description="Largest loss of dev accuracy against plaintext fine-tuning [points] a set "
        "may have, as measured per set and packing in fhe.accuracy_study; null (default): no "
        "accuracy filter (min_precision_bits applies either way).",
    )
    accuracy_study: str | None = Field(
        None,
        description="The accuracy.json of a `privtuner accuracy --mode simulate|encrypted` "
        "run (a path relative to the YAML file) that fhe.max_accuracy_loss_points reads.",
    )

    @field_validator("min_security_bits")
    @classmethod
    def _security(cls, v: float) -> float:
        if v > MAX_SECURITY_BITS:
            raise ValueError(
                f"above every set (best security_bits {MAX_SECURITY_BITS:g}: the top of the HE "
                f"standard's table; security beyond it is an extrapolation no set is credited "
                f"with); give at most {MAX_SECURITY_BITS:g} (got {v:g})"
            )
        return v

    @field_validator("ring_degrees")
    @classmethod
    def _degrees(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        bad = [n for n in v if n not in RING_DEGREES]
        if bad:
            raise ValueError(f"ring degrees must be among {list(RING_DEGREES)} (got {bad})")
        return tuple(sorted(set(v)))

    @model_validator(mode="after")
    def _scale(self) -> FheSpec:
        if self.scale_bits_max < self.scale_bits_min:
            raise ValueError(
                f"scale_bits_max must be >= scale_bits_min (got {self.scale_bits_max} < "
                f"{self.scale_bits_min})"
            )
        return self

    @model_validator(mode="after")
    def _accuracy(self) -> FheSpec:
        if self.max_accuracy_loss_points is not None and not self.accuracy_study:
            raise ValueError(
                "max_accuracy_loss_points needs accuracy_study: the accuracy.json of a "
                "`privtuner accuracy --mode simulate` run over the catalogue sets"
            )
        return self


class ObjectiveSpec(_Frozen):
    """Objective (spec section 4): weighted energy - privacy, or energy under a privacy floor."""

    kind: Literal["weighted", "constrained"] = Field(
        "weighted",
        description="weighted: min sum w_E E - w_P Phi; constrained: min sum E "
        "s.t. Phi >= privacy_min.",
    )
    energy_weight: Float = Field(1.0, ge=0, le=1e9, description="w_E [1/J].")
    privacy_weight: Float = Field(
        20.0,
        ge=0,
        le=1e9,
        description="w_P [1/unit of the privacy metric, e.g. 1/bit]; with energy_weight "
        "1/J, one unit of privacy is worth w_P joules.",
    )
    privacy_metric: str = Field(
        "security_bits", description="Privacy metric Phi by name (security_bits, log2_n)."
    )
    privacy_min: Float = Field(
        128.0, ge=0, le=1e6, description="Phi_min for kind=constrained (unit of the metric)."
    )
    deadline_s: Float = Field(
        800.0,
        ge=1e-3,
        le=1e6,
        description="Per-round latency limit T_max [s] (compute + uplink + downlink + server); "
        "the default scenario needs >= 79.7 s with fhe.packing 'interleaved' (28.6 MB up per "
        "device per round), >= 604 s with 'column' (481 MB up).",
    )


class SolverSpec(_Frozen):
    """Solver choice and tolerances."""

    method: str = Field("exact", description="exact, ao, enumerate, or a baseline name.")
    rel_tol: Float = Field(
        1e-6, ge=1e-12, lt=1, description="Relative optimality gap / AO tolerance."
    )
    max_iterations: Int = Field(100, ge=1, le=1_000_000, description="Iteration cap.")
    time_limit_s: Float = Field(300.0, ge=1e-3, le=1e6, description="Wall-clock limit [s].")


class ScenarioSpec(_Frozen):
    """A whole scenario file (what the user wrote), after validation."""

    schema_version: Literal[1] = Field(1, description="Scenario schema version (1).")
    name: str = Field(
        "scenario", min_length=1, max_length=NAME_MAX_CHARS, description="Scenario name."
    )
    seed: Int = Field(0, ge=0, le=2**63 - 1, description="Seed of every random draw.")
    system: SystemSpec = SystemSpec()
    devices: DevicesSpec = DevicesSpec()
    server: ServerSpec = ServerSpec()
    workload: WorkloadSpec = WorkloadSpec()
    fhe: FheSpec = FheSpec()
    objective: ObjectiveSpec = ObjectiveSpec()
    solver: SolverSpec = SolverSpec()
    sweep: dict[str, list[Any]] | None = Field(
        None,
        description="Dotted path -> list of values; expanded as a cartesian product into "
        "scenarios named <name>[path=value,...].",
    )

    def with_overrides(self, overrides: dict[str, Any]) -> ScenarioSpec:
        """A new validated spec with dotted-path overrides applied (used by sweeps and CLI)."""
        from privtuner.scenario.validation import apply_overrides

        return apply_overrides(self, overrides)


def scenario_json_schema(
    methods: Sequence[str] = (), metrics: Sequence[str] = ()
) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a scenario file: what the loader accepts, with
    ``methods`` and ``metrics`` (the registered solver methods and privacy metrics, which
    ``privtuner validate`` checks) as enums of ``solver.method`` and
    ``objective.privacy_metric``. Rules between fields (``min_distance_m < cell_radius_m``,
    ``low <= high``, the scale range, one channel per explicit device, unique device ids, no
    ``devices.count`` other than an explicit list's length, ``num_heads`` dividing
    ``hidden_size``, the sweep's size) are stated in the descriptions; ``privtuner validate``
    enforces them."""
    body = ScenarioSpec.model_json_schema()
    body["description"] = f"{body.get('description', '')} {NUMBER_RULE}".strip()
    defs = body["$defs"]
    if methods:
        defs["SolverSpec"]["properties"]["method"]["enum"] = sorted(methods)
    if metrics:
        defs["ObjectiveSpec"]["properties"]["privacy_metric"]["enum"] = sorted(metrics)
    defs["FheSpec"]["properties"]["ring_degrees"]["items"]["enum"] = list(RING_DEGREES)
    _json_bounds(body)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "x-schema-version": SCHEMA_VERSION,
        **body,
    }


_BOUND_KEYWORDS = {
    "ge": "minimum",
    "le": "maximum",
    "gt": "exclusiveMinimum",
    "lt": "exclusiveMaximum",
}


def _json_bounds(node: Any) -> None:
    """Bounds pydantic leaves under its own names (``ge``, ``le``: in an optional field's
    union member) renamed to JSON Schema keywords, in place."""
    if isinstance(node, dict):
        for key in [k for k in node if k in _BOUND_KEYWORDS]:
            node[_BOUND_KEYWORDS[key]] = node.pop(key)
        for value in node.values():
            _json_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _json_bounds(value)
