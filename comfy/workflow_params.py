"""Parameter types of a workflow manifest: their schema, and coercion of user values into typed values.

Each parameter model parses the manifest entry (``extra="forbid"``, defaults checked against the bounds) and
``resolve(name, value)`` turns one raw value (``None`` = not given) into the typed value, or raises
:class:`ParamError`. ``assignments(value)`` says what to write at which ``node.inputs.name`` target.
"""

from __future__ import annotations

import builtins
import math
import re
import secrets
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from comfy.text import clean_text
from comfy.workflow_errors import ParamError

#: KSampler's ``seed`` input accepts 0..0xffffffffffffffff (ComfyUI nodes.py).
SEED_MAX = 0xFFFFFFFFFFFFFFFF
#: Random seeds stay below 2**53, so every front end can show them and take them back: Discord's INTEGER
#: option and JavaScript numbers stop there (a typed seed may still be anything up to SEED_MAX).
RANDOM_SEED_BOUND = 2**53

#: Text longer than this many times its ``max_length`` is refused before it is cleaned: cleaning only
#: removes characters, and nobody types four invisible characters for each visible one.
RAW_TEXT_FACTOR = 4

TARGET_RE = re.compile(r"^(?P<node>[^.\s]+)\.inputs\.(?P<input>[^.\s]+)$")
_INT_RE = re.compile(r"^[+-]?\d{1,30}$")
_FLOAT_RE = re.compile(r"^[+-]?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})(?:[eE][+-]?\d{1,3})?$")
_RATIO_RE = re.compile(r"^\s*(\d{1,5}(?:\.\d{1,4})?)\s*[:x×/]\s*(\d{1,5}(?:\.\d{1,4})?)\s*$", re.IGNORECASE)
_TRUE = frozenset({"true", "yes", "on", "1", "y"})
_FALSE = frozenset({"false", "no", "off", "0", "n"})


def parse_target(target: str) -> tuple[str, str]:
    """Split ``"3.inputs.seed"`` into ``("3", "seed")``; raises ValueError for any other shape."""
    m = TARGET_RE.match(target)
    if m is None:
        raise ValueError(f"target {target!r} is not of the form '<node_id>.inputs.<input_name>'")
    return m["node"], m["input"]


def _number(name: str, value: Any, *, integer: bool, **bounds: Any) -> int | float:
    """Coerce ``30``, ``30.0``, ``"30"``, ``" 7.5 "`` into a number; bools and junk are ``not_a_number``."""
    num: int | float
    if isinstance(value, bool):
        raise ParamError(name, "not_a_number", **bounds)
    if isinstance(value, int | float):
        num = value
    elif isinstance(value, str) and _INT_RE.match(value.strip()):
        num = int(value.strip())
    elif isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        num = float(value.strip())
    else:
        raise ParamError(name, "not_a_number", **bounds)
    if isinstance(num, float):
        if not math.isfinite(num):
            raise ParamError(name, "not_a_number", **bounds)
        if integer:
            if not num.is_integer():
                raise ParamError(name, "not_an_integer", **bounds)
            num = int(num)
    return num


class _Param(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Python types a target's current literal may have for this parameter to replace it.
    target_types: ClassVar[tuple[type, ...]] = (str,)

    description: str = ""

    def all_targets(self) -> list[str]:
        """Every ``node.inputs.name`` path this parameter writes."""
        return list(getattr(self, "targets", []))

    def assignments(self, value: Any) -> list[tuple[str, Any]]:
        """``(target, typed value)`` pairs to write into the graph for the resolved ``value``."""
        return [(t, value) for t in self.all_targets()]

    def resolve(self, name: str, value: Any) -> Any:  # pragma: no cover - every subclass overrides
        """Coerce one raw value (``None`` = not given) or raise :class:`ParamError`."""
        raise NotImplementedError

    @field_validator("targets", "width", "height", check_fields=False)
    @classmethod
    def _targets_shape(cls, v: list[str]) -> list[str]:
        for t in v:
            parse_target(t)
        return v


Targets = Annotated[list[str], Field(min_length=1)]


class TextParam(_Param):
    """Free text such as a prompt: ``max_length`` characters, ``required`` refuses empty/blank text."""

    type: Literal["text"]
    targets: Targets
    max_length: int = Field(default=2000, ge=1, le=100_000)
    required: bool = False
    default: str = ""

    @model_validator(mode="after")
    def _default_fits(self) -> Self:
        if len(self.default) > self.max_length:
            raise ValueError(f"default is longer than max_length {self.max_length}")
        return self

    def resolve(self, name: str, value: Any) -> str:
        """Text is cleaned (:func:`~comfy.text.clean_text`: no controls, escapes or invisible characters
        reach ComfyUI), then its length and presence are checked: text that was only invisible is none."""
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ParamError(name, "not_text")
        if len(value) > RAW_TEXT_FACTOR * self.max_length:  # not worth cleaning (a megabyte takes 0.4 s)
            raise ParamError(name, "too_long", max_length=self.max_length, length=len(value))
        value = clean_text(value)
        if not value:
            if self.required:
                raise ParamError(name, "required")
            value = self.default
        if len(value) > self.max_length:
            raise ParamError(name, "too_long", max_length=self.max_length, length=len(value))
        return str(value)


def _check_bounds(lo: float, hi: float, default: float) -> None:
    """A manifest's numeric parameter: ``min <= default <= max`` (a load error otherwise)."""
    if lo > hi:
        raise ValueError(f"min {lo} is above max {hi}")
    if not lo <= default <= hi:
        raise ValueError(f"default {default} is outside [{lo}, {hi}]")


def _bounded(name: str, value: Any, *, integer: bool, lo: float, hi: float, step: float | None) -> float:
    """Coerce ``value``, refuse it outside ``[lo, hi]``, snap it to ``lo + k*step``."""
    num = _number(name, value, integer=integer, min=lo, max=hi)
    if num < lo:
        raise ParamError(name, "too_small", min=lo, max=hi)
    if num > hi:
        raise ParamError(name, "too_large", min=lo, max=hi)
    if step:
        num = min(hi, lo + round((num - lo) / step) * step)
    return num


class IntParam(_Param):
    """An integer in ``[min, max]``; with ``step`` the value is snapped to ``min + k*step``."""

    type: Literal["int"]
    target_types: ClassVar[tuple[builtins.type, ...]] = (int,)
    targets: Targets
    min: int
    max: int
    default: int
    step: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _default_in_bounds(self) -> Self:
        _check_bounds(self.min, self.max, self.default)
        return self

    def resolve(self, name: str, value: Any) -> int:
        """Coerce, check bounds, snap to ``step``."""
        if value is None:
            return self.default
        return int(_bounded(name, value, integer=True, lo=self.min, hi=self.max, step=self.step))


class FloatParam(_Param):
    """A number in ``[min, max]``; with ``step`` the value is snapped to ``min + k*step``."""

    type: Literal["float"]
    target_types: ClassVar[tuple[builtins.type, ...]] = (int, float)
    targets: Targets
    min: float
    max: float
    default: float
    step: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _default_in_bounds(self) -> Self:
        _check_bounds(self.min, self.max, self.default)
        return self

    def resolve(self, name: str, value: Any) -> float:
        """Coerce, check bounds, snap to ``step``."""
        if value is None:
            return float(self.default)
        num = float(_bounded(name, value, integer=False, lo=self.min, hi=self.max, step=self.step))
        return round(num, 10)  # drop float noise such as 0.30000000000000004


class SeedParam(_Param):
    """A sampler seed: random (below 2**53) when not given or ``-1``; else ``0..0xffffffffffffffff``."""

    type: Literal["seed"]
    target_types: ClassVar[tuple[builtins.type, ...]] = (int,)
    targets: Targets
    default: int | None = Field(default=None, ge=0, le=SEED_MAX)

    def resolve(self, name: str, value: Any) -> int:
        """Resolve to a concrete seed so the result can be reproduced."""
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "random")):
            return self.default if self.default is not None else secrets.randbelow(RANDOM_SEED_BOUND)
        num = int(_number(name, value, integer=True, min=0, max=SEED_MAX))
        if num == -1:
            return secrets.randbelow(RANDOM_SEED_BOUND)
        if num < 0:
            raise ParamError(name, "too_small", min=0, max=SEED_MAX)
        if num > SEED_MAX:
            raise ParamError(name, "too_large", min=0, max=SEED_MAX)
        return num


class ChoiceParam(_Param):
    """One of ``options`` (matched case-insensitively, returned as spelled in the manifest)."""

    type: Literal["choice"]
    targets: Targets
    options: Annotated[list[str], Field(min_length=1)]
    default: str | None = None

    @model_validator(mode="after")
    def _default_in_options(self) -> Self:
        if len(set(self.options)) != len(self.options):
            raise ValueError("options are not unique")
        if self.default is not None and self.default not in self.options:
            raise ValueError(f"default {self.default!r} is not one of the options {self.options}")
        return self

    def resolve(self, name: str, value: Any) -> str:
        """Pick the option; the default (or the first option) when not given."""
        if value is None:
            return self.default if self.default is not None else self.options[0]
        if isinstance(value, str):
            if value in self.options:
                return value
            folded = {o.casefold(): o for o in self.options}
            if value.strip().casefold() in folded:
                return folded[value.strip().casefold()]
        raise ParamError(name, "not_in_options", options=list(self.options))


class BoolParam(_Param):
    """A switch: accepts booleans, 0/1 and yes/no/on/off/true/false."""

    type: Literal["bool"]
    target_types: ClassVar[tuple[builtins.type, ...]] = (bool,)
    targets: Targets
    default: bool = False

    def resolve(self, name: str, value: Any) -> bool:
        """Coerce to a bool."""
        if value is None:
            return self.default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ParamError(name, "not_a_bool")


class AspectParam(_Param):
    """An aspect ratio ``W:H`` that sets width and height inputs.

    The size keeps about ``base_pixels`` pixels, each side a multiple of ``multiple`` and at most
    ``max_side``; ratios beyond ``max_ratio:1`` (or ``1:max_ratio``) are refused. The resolved value stays
    the normalized ratio string (``"16:9"``), so stored values validate again to the same thing;
    :meth:`size` gives the pixels.
    """

    type: Literal["aspect"]
    target_types: ClassVar[tuple[builtins.type, ...]] = (int,)
    width: Targets
    height: Targets
    default: str = "1:1"
    base_pixels: int = Field(default=512 * 512, ge=64 * 64, le=8192 * 8192)
    multiple: int = Field(default=64, ge=1, le=512)
    max_side: int = Field(default=2048, ge=64, le=16384)
    max_ratio: float = Field(default=4.0, ge=1.0, le=16.0)

    @model_validator(mode="after")
    def _default_ok(self) -> Self:
        if self.max_side < self.multiple:
            raise ValueError(f"max_side {self.max_side} is below multiple {self.multiple}")
        try:
            self.resolve("default", self.default)
        except ParamError:
            raise ValueError(
                f"default {self.default!r} is not an allowed ratio "
                f"(1:{self.max_ratio:g} .. {self.max_ratio:g}:1)"
            ) from None
        return self

    def all_targets(self) -> list[str]:
        """Width targets, then height targets."""
        return [*self.width, *self.height]

    def assignments(self, value: Any) -> list[tuple[str, Any]]:
        """Width and height in pixels for the ratio ``value``."""
        w, h = self.size(value)
        return [(t, w) for t in self.width] + [(t, h) for t in self.height]

    def resolve(self, name: str, value: Any) -> str:
        """Normalize ``"16:9"``, ``"16x9"``, ``"2.39:1"``; refuse zero, junk and too-extreme ratios."""
        if value is None:
            value = self.default
        bounds = {"min_ratio": f"1:{self.max_ratio:g}", "max_ratio": f"{self.max_ratio:g}:1"}
        m = _RATIO_RE.match(value) if isinstance(value, str) else None
        if m is None:
            raise ParamError(name, "bad_aspect", **bounds)
        w, h = float(m[1]), float(m[2])
        if w <= 0 or h <= 0 or not 1 / self.max_ratio <= w / h <= self.max_ratio:
            raise ParamError(name, "bad_aspect", **bounds)
        return f"{w:g}:{h:g}"

    def size(self, value: str) -> tuple[int, int]:
        """Pixels ``(width, height)`` for a resolved ratio string."""
        a, b = (float(x) for x in value.split(":"))
        ratio = a / b
        w, h = math.sqrt(self.base_pixels * ratio), math.sqrt(self.base_pixels / ratio)
        if max(w, h) > self.max_side:
            shrink = self.max_side / max(w, h)
            w, h = w * shrink, h * shrink
        top = (self.max_side // self.multiple) * self.multiple
        return tuple(  # type: ignore[return-value]  # always exactly two sides
            max(self.multiple, min(top, round(side / self.multiple) * self.multiple)) for side in (w, h)
        )


class ModelParam(_Param):
    """A model file name in a ComfyUI model ``folder`` (checkpoints, loras, upscale_models...).

    ``options``, when given, is the allowlist users may pick from; otherwise any plain relative file name is
    accepted (the server refuses names it does not have). Operators change ``default`` with model overrides.
    """

    type: Literal["model"]
    targets: Targets
    folder: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    default: str
    options: list[str] | None = None

    @model_validator(mode="after")
    def _default_ok(self) -> Self:
        try:
            check_model_name("default", self.default)
        except ParamError:
            raise ValueError(f"default {self.default!r} is not a plain relative file name") from None
        if self.options is not None and self.default not in self.options:
            raise ValueError(f"default {self.default!r} is not one of the options {self.options}")
        return self

    def resolve(self, name: str, value: Any) -> str:
        """A safe relative file name, within ``options`` if the manifest lists them."""
        if value is None:
            return self.default
        if not isinstance(value, str):
            raise ParamError(name, "bad_model_name")
        value = value.strip()
        check_model_name(name, value)
        if self.options is not None and value not in self.options:
            raise ParamError(name, "not_in_options", options=list(self.options))
        return str(value)


def check_model_name(name: str, value: str) -> None:
    """Refuse empty names, absolute paths, ``..`` and control characters (raises ``bad_model_name``)."""
    parts = re.split(r"[\\/]", value)
    if (
        not value
        or len(value) > 255
        or value[0] in "/\\"
        or ".." in parts
        or any(ord(c) < 32 for c in value)
        or re.match(r"^[A-Za-z]:", value)
    ):
        raise ParamError(name, "bad_model_name")


Param = Annotated[
    TextParam | IntParam | FloatParam | SeedParam | ChoiceParam | BoolParam | AspectParam | ModelParam,
    Field(discriminator="type"),
]
