"""Device models: how a randomly formed memristor crossbar's conductances are drawn and read.

Every model samples a crossbar as differential pairs of cells: ``g_us[0]`` is G+, ``g_us[1]``
is G-, both in microsiemens and never negative; a layer's weight is ``scale * (G+ - G-)``.
Conductances are formed once, at random, from an explicit ``torch.Generator``: the same seed
gives the same chip. Reading them back is noisy (:func:`read_conductance`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from prime.core.device import drawn_like
from prime.core.errors import PrimeError
from prime.core.registry import Registry

DEVICES: Registry[type[ConductanceModel]] = Registry("device preset")

#: the quantile of a device's formed cells taken as its programmable maximum, and its
#: standard-normal z-score (Φ⁻¹(0.999) = 3.0902)
G_MAX_QUANTILE = 0.999
_G_MAX_Z = 3.0902

#: the device model of layers and models built without one
DEFAULT_DEVICE = "prime-gaussian"

#: std of PRIME's ΔG (µS): reference code ``nn.init.normal_(weight, std=6.352)``
PRIME_DELTA_STD_US = 6.352


class ConductanceModel:
    """Base of the device presets: a frozen dataclass with a ``sample`` method."""

    name: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, Any]]  # every preset is a dataclass

    def sample_cells(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Draw independent cell conductances (µS), float32 of ``shape``."""
        raise NotImplementedError

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Draw a crossbar of differential pairs: float32 [2, *shape] in µS (G+, G-)."""
        return self.sample_cells((2, *shape), generator)

    def g_max_us(self) -> float:
        """The largest conductance a cell of this device is programmed to (µS): the
        :data:`G_MAX_QUANTILE` quantile of its formed cells (programming weights onto a chip,
        :mod:`prime.hardware.programming`)."""
        raise NotImplementedError

    def weight_rms_us(self) -> float:
        """RMS of a pair's difference G+ - G- over the device's population (µS)."""
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        """A JSON-able description that :func:`get_device` turns back into this model."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key, value in fields.items():
            if isinstance(value, np.ndarray):
                fields[key] = value.tolist()
        return {"name": self.name, **fields}


@DEVICES.register("prime-gaussian")
@dataclass(frozen=True)
class GaussianDifferential(ConductanceModel):
    """The PRIME reference code's device: the pair's difference ΔG ~ N(0, ``delta_std_us``).

    Source: PRIME (Wang et al., arXiv 2407.18625), reference code, ``nn.init.normal_(weight,
    std=6.352)`` "normal distribution similar to rram". The difference is split into a pair
    with one cell at 0 µS: G+ = max(ΔG, 0), G- = max(-ΔG, 0).
    """

    name: ClassVar[str] = "prime-gaussian"
    delta_std_us: float = PRIME_DELTA_STD_US

    def __post_init__(self) -> None:
        _check_positive("delta_std_us", self.delta_std_us)

    def weight_rms_us(self) -> float:
        return float(self.delta_std_us)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        delta = torch.randn(shape, generator=generator) * self.delta_std_us
        return torch.stack([delta.clamp(min=0), (-delta).clamp(min=0)])

    def sample_cells(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return torch.randn(shape, generator=generator).abs() * self.delta_std_us

    def g_max_us(self) -> float:
        """|ΔG| is half-normal: its 99.9 % quantile is Φ⁻¹(0.9995) σ = 3.29 σ."""
        return 3.2905 * self.delta_std_us


@DEVICES.register("rram-lognormal")
@dataclass(frozen=True)
class LognormalRRAM(ConductanceModel):
    """A randomly electroformed TaOx RRAM array: some cells never form, the rest are lognormal.

    A cell stays unformed (0 µS) with probability ``p_unformed``; a formed cell has
    ln G ~ N(ln ``median_us``, ``sigma_ln``). Source: measured post-forming conductances of a
    50x50 random TaOx RRAM array (echo-state graph network, Nat. Mach. Intell. 2023, source
    data ``Figure_1/weight_map``): 50.7 % unformed; formed mean 12.35 µS, std 1.86 µS, which a
    lognormal with median 12.21 µS and σ_ln 0.149 reproduces.
    """

    name: ClassVar[str] = "rram-lognormal"
    p_unformed: float = 0.507
    median_us: float = 12.21
    sigma_ln: float = 0.149

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_unformed < 1.0:
            raise PrimeError(f"p_unformed must be in [0, 1), got {self.p_unformed}")
        _check_positive("median_us", self.median_us)
        _check_positive("sigma_ln", self.sigma_ln)

    def weight_rms_us(self) -> float:
        """sqrt(2 Var G) for independent cells: E G = (1 - p) m e^(σ²/2), E G² = (1 - p) m²
        e^(2σ²)."""
        formed = 1 - self.p_unformed
        mean = formed * self.median_us * math.exp(self.sigma_ln**2 / 2)
        mean_sq = formed * self.median_us**2 * math.exp(2 * self.sigma_ln**2)
        return math.sqrt(2 * (mean_sq - mean**2))

    def sample_cells(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        formed = torch.rand(shape, generator=generator) >= self.p_unformed
        log_g = math.log(self.median_us) + self.sigma_ln * torch.randn(shape, generator=generator)
        return torch.where(formed, log_g.exp(), torch.zeros(()))

    def g_max_us(self) -> float:
        """The 99.9 % quantile of the formed cells' lognormal: median · exp(3.09 σ_ln)."""
        return self.median_us * math.exp(_G_MAX_Z * self.sigma_ln)


@DEVICES.register("empirical")
@dataclass(frozen=True, eq=False)
class EmpiricalConductance(ConductanceModel):
    """Resample (with replacement) from measured cell conductances ``values_us`` (µS).

    Use it with a chip's measured values, e.g. ``np.load("esgnn_measured_G_hidden_50x50.npy")``:
    every cell of the new crossbar is an independent draw from those values, unformed zeros
    included.
    """

    name: ClassVar[str] = "empirical"
    values_us: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0))

    def __post_init__(self) -> None:
        try:
            values = np.asarray(self.values_us, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise PrimeError(
                f"empirical values_us must be a list of numbers (µS), got {self.values_us!r:.60}"
            ) from None
        if values.size == 0:
            raise PrimeError(
                "the empirical device needs measured conductances: pass values_us=<array of µS>"
            )
        check_conductances(values, "empirical values_us")
        object.__setattr__(self, "values_us", values)

    def weight_rms_us(self) -> float:
        """sqrt(2 Var G) of the measured values (two independent draws per pair)."""
        return math.sqrt(2 * float(np.var(self.values_us)))

    def sample_cells(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        values = torch.as_tensor(self.values_us, dtype=torch.float32)
        index = torch.randint(len(values), shape, generator=generator)
        return values[index]

    def g_max_us(self) -> float:
        """The 99.9 % quantile of the measured values (unformed zeros left out)."""
        formed = self.values_us[self.values_us > 0]
        if formed.size == 0:
            raise PrimeError("the empirical device's values_us are all 0 µS: no cell conducts")
        return float(np.quantile(formed, G_MAX_QUANTILE))


def get_device(name: str, **params: Any) -> ConductanceModel:
    """The device preset ``name`` with optional parameter overrides (``PrimeError`` if unknown)."""
    cls = DEVICES.get(name)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise PrimeError(
            f"device preset {name!r} has no parameter {', '.join(unknown)}; "
            f"its parameters are: {', '.join(sorted(known)) or 'none'}"
        )
    for field in dataclasses.fields(cls):
        value = params.get(field.name)
        if isinstance(field.default, float) and field.name in params:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PrimeError(
                    f"device preset {name!r}: {field.name} must be a number, got {value!r}"
                )
    return cls(**params)


def device_from_config(config: dict[str, Any]) -> ConductanceModel:
    """Inverse of :meth:`ConductanceModel.to_config`."""
    params = dict(config)
    name = params.pop("name", None)
    if not isinstance(name, str):
        raise PrimeError(f"a device config needs a preset 'name' (a string), got {name!r}")
    return get_device(name, **params)


def as_device(device_model: ConductanceModel | str | dict[str, Any]) -> ConductanceModel:
    """A device model from a preset name, a config (:meth:`ConductanceModel.to_config`) or
    a model (returned as it is)."""
    if isinstance(device_model, ConductanceModel):
        return device_model
    if isinstance(device_model, str):
        return get_device(device_model)
    if isinstance(device_model, dict):
        return device_from_config(device_model)
    raise PrimeError(
        f"a device model is a preset name (e.g. {DEFAULT_DEVICE!r}), a device config dict or "
        f"a ConductanceModel, got {type(device_model).__name__}"
    )


def list_devices() -> list[str]:
    return DEVICES.names()


def chip_generator(seed: int) -> torch.Generator:
    """The generator that forms a chip: one explicit seed per chip."""
    return torch.Generator().manual_seed(int(seed))


def read_conductance(
    g_us: torch.Tensor, read_noise: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One noisy read of the cells: multiplicative Gaussian, G (1 + σ ε), clipped at 0 µS.

    PRIME evaluates with σ = 0.02. A fresh ε is drawn on every call (every read), on the
    CPU ``generator`` whatever the cells' device (the same ε on every device).
    """
    if read_noise < 0 or not math.isfinite(read_noise):
        raise PrimeError(f"read noise σ must be a finite number >= 0, got {read_noise}")
    if read_noise == 0:
        return g_us
    return (g_us * (1 + read_noise * drawn_like(g_us, generator))).clamp(min=0)


def check_conductances(g_us: np.ndarray | torch.Tensor, what: str = "conductances") -> None:
    """Raise ``PrimeError`` if any conductance is NaN, infinite or negative."""
    values = torch.as_tensor(np.asarray(g_us) if not torch.is_tensor(g_us) else g_us)
    if (~torch.isfinite(values)).any():
        raise PrimeError(f"{what} contain NaN or infinite values; conductances must be finite µS")
    if (values < 0).any():
        raise PrimeError(
            f"{what} contain negative values (min {values.min().item():.4g}); conductances are "
            "magnitudes in µS >= 0 (store a differential pair as two cells)"
        )


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise PrimeError(f"{name} must be a finite number > 0, got {value!r}")
