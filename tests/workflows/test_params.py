"""Workflow.validate: coercion, bounds, defaults, the seed, aspect ratios and every ParamError reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfy.workflow_params import SEED_MAX, AspectParam, BoolParam
from comfy.workflows import ParamError, Workflow, load_workflow
from tests.workflows.conftest import write_workflow


@pytest.fixture
def wf(tmp_path: Path) -> Workflow:
    return load_workflow(write_workflow(tmp_path, "wf"))


def reason(wf: Workflow, raw: dict[str, Any]) -> ParamError:
    with pytest.raises(ParamError) as err:
        wf.validate(raw)
    return err.value


def test_defaults_filled_and_types_coerced(wf: Workflow) -> None:
    v = wf.validate({"prompt": "a cat", "steps": "30", "cfg": "7.5", "seed": "42"})
    assert v == {
        "prompt": "a cat",
        "seed": 42,
        "steps": 30,
        "cfg": 7.5,
        "sampler": "euler",
        "ar": "1:1",
        "checkpoint": "sd15.safetensors",
    }
    assert type(v["steps"]) is int and type(v["cfg"]) is float and type(v["seed"]) is int


@pytest.mark.parametrize(
    ("raw", "expected"), [(30, 30), ("30", 30), (" 30 ", 30), (30.0, 30), ("3e1", 30), ("+30", 30)]
)
def test_int_coercion(wf: Workflow, raw: Any, expected: int) -> None:
    assert wf.validate({"prompt": "x", "steps": raw})["steps"] == expected


@pytest.mark.parametrize(("raw", "expected"), [(7, 7.0), ("7", 7.0), ("7.25", 7.25), (".5e1", 5.0)])
def test_float_coercion(wf: Workflow, raw: Any, expected: float) -> None:
    assert wf.validate({"prompt": "x", "cfg": raw})["cfg"] == expected


@pytest.mark.parametrize(
    ("raw", "code", "bounds"),
    [
        ({"prompt": "x", "steps": 0}, "too_small", {"min": 1, "max": 100}),
        ({"prompt": "x", "steps": 101}, "too_large", {"min": 1, "max": 100}),
        ({"prompt": "x", "cfg": 0.5}, "too_small", {"min": 1.0, "max": 30.0}),
        ({"prompt": "x", "cfg": "31"}, "too_large", {"min": 1.0, "max": 30.0}),
        ({"prompt": "x", "steps": "many"}, "not_a_number", {"min": 1, "max": 100}),
        ({"prompt": "x", "steps": True}, "not_a_number", {"min": 1, "max": 100}),
        ({"prompt": "x", "steps": [3]}, "not_a_number", {"min": 1, "max": 100}),
        ({"prompt": "x", "steps": "1" * 5000}, "not_a_number", {"min": 1, "max": 100}),
        ({"prompt": "x", "cfg": "nan"}, "not_a_number", {"min": 1.0, "max": 30.0}),
        ({"prompt": "x", "cfg": float("inf")}, "not_a_number", {"min": 1.0, "max": 30.0}),
        ({"prompt": "x", "steps": "2.5"}, "not_an_integer", {"min": 1, "max": 100}),
        ({"prompt": "x", "bogus": 1}, "unknown_param", None),
        ({}, "required", {}),
        ({"prompt": "   "}, "required", {}),
        ({"prompt": "x" * 101}, "too_long", {"max_length": 100, "length": 101}),
        ({"prompt": "\u200b\u200b"}, "required", {}),  # only invisible characters: no prompt
        ({"prompt": "x" + "\u200b" * 401}, "too_long", {"max_length": 100, "length": 402}),  # not cleaned
        ({"prompt": 5}, "not_text", {}),
        ({"prompt": "x", "sampler": "magic"}, "not_in_options", {"options": ["euler", "dpmpp_2m"]}),
        ({"prompt": "x", "ar": "0:0"}, "bad_aspect", {"min_ratio": "1:4", "max_ratio": "4:1"}),
        ({"prompt": "x", "checkpoint": "../secrets.safetensors"}, "bad_model_name", {}),
        ({"prompt": "x", "seed": -2}, "too_small", {"min": 0, "max": SEED_MAX}),
        ({"prompt": "x", "seed": SEED_MAX + 1}, "too_large", {"min": 0, "max": SEED_MAX}),
    ],
)
def test_param_error_reasons(
    wf: Workflow, raw: dict[str, Any], code: str, bounds: dict[str, Any] | None
) -> None:
    err = reason(wf, raw)
    assert err.reason == code
    if bounds is not None:
        assert err.bounds == bounds
    assert err.field in {*raw, "prompt"}
    assert code in str(err)


def test_text_is_measured_after_cleaning(wf: Workflow) -> None:
    """Invisible characters do not count against max_length (within RAW_TEXT_FACTOR of it)."""
    assert wf.validate({"prompt": "x" * 100 + "\u200b" * 300})["prompt"] == "x" * 100


def test_unknown_param_lists_the_known_ones(wf: Workflow) -> None:
    err = reason(wf, {"prompt": "x", "stepz": 3})
    assert err.field == "stepz" and "steps" in err.bounds["known"]


def test_choice_is_case_insensitive_and_canonical(wf: Workflow) -> None:
    assert wf.validate({"prompt": "x", "sampler": "DPMPP_2M"})["sampler"] == "dpmpp_2m"


def test_int_step_snaps(tmp_path: Path, manifest) -> None:
    manifest["params"]["steps"].update({"min": 0, "max": 100, "step": 5})
    wf = load_workflow(write_workflow(tmp_path, "wf", manifest=manifest))
    assert wf.validate({"prompt": "x", "steps": 23})["steps"] == 25
    assert wf.validate({"prompt": "x", "steps": 100})["steps"] == 100


def test_float_step_snaps_without_noise(tmp_path: Path, manifest) -> None:
    manifest["params"]["cfg"].update({"min": 0, "max": 1, "default": 0.5, "step": 0.1})
    wf = load_workflow(write_workflow(tmp_path, "wf", manifest=manifest))
    assert wf.validate({"prompt": "x", "cfg": 0.33})["cfg"] == 0.3


class TestSeed:
    def test_random_when_missing_or_minus_one(self, wf: Workflow) -> None:
        seeds = {wf.validate({"prompt": "x", "seed": s})["seed"] for s in (None, -1, "-1", "random", "")}
        seeds |= {wf.validate({"prompt": "x"})["seed"] for _ in range(5)}
        assert all(isinstance(s, int) and 0 <= s < 2**53 for s in seeds)
        assert len(seeds) > 1

    def test_full_ksampler_range_accepted(self, wf: Workflow) -> None:
        assert wf.validate({"prompt": "x", "seed": 0})["seed"] == 0
        assert wf.validate({"prompt": "x", "seed": str(SEED_MAX)})["seed"] == 0xFFFFFFFFFFFFFFFF

    def test_resolved_seed_is_stable(self, wf: Workflow) -> None:
        v = wf.validate({"prompt": "x"})
        assert wf.validate(v) == v
        assert wf.render(v)["3"]["inputs"]["seed"] == v["seed"]

    def test_render_refuses_missing_seed(self, wf: Workflow) -> None:
        with pytest.raises(ParamError) as err:
            wf.render({"prompt": "x"})
        assert (err.value.field, err.value.reason) == ("seed", "required")


@pytest.mark.parametrize("raw", [True, False, "yes", "No", "on", "0", 1, 0])
def test_bool_coercion(raw: Any) -> None:
    p = BoolParam(type="bool", targets=["1.inputs.x"])
    assert p.resolve("b", raw) is (raw in (True, "yes", "on", 1))


@pytest.mark.parametrize("raw", ["maybe", 2, 1.5])
def test_bool_refused(raw: Any) -> None:
    with pytest.raises(ParamError) as err:
        BoolParam(type="bool", targets=["1.inputs.x"]).resolve("b", raw)
    assert err.value.reason == "not_a_bool"


class TestAspect:
    P = AspectParam(
        type="aspect",
        width=["5.inputs.width"],
        height=["5.inputs.height"],
        base_pixels=262144,
        multiple=64,
        max_side=2048,
    )

    @pytest.mark.parametrize(
        ("ratio", "size"),
        [
            ("1:1", (512, 512)),
            ("16:9", (704, 384)),
            ("9:16", (384, 704)),
            ("4:3", (576, 448)),
            ("3:2", (640, 448)),
            ("2.39:1", (768, 320)),
            ("4:1", (1024, 256)),
            ("1:4", (256, 1024)),
        ],
    )
    def test_sizes(self, ratio: str, size: tuple[int, int]) -> None:
        value = self.P.resolve("ar", ratio)
        w, h = self.P.size(value)
        assert (w, h) == size
        assert w % 64 == 0 and h % 64 == 0
        assert 0.7 * 262144 <= w * h <= 1.3 * 262144
        assert self.P.assignments(value) == [("5.inputs.width", w), ("5.inputs.height", h)]

    @pytest.mark.parametrize("ratio", ["16x9", " 16 : 9 ", "16/9", "32:18"])
    def test_spellings(self, ratio: str) -> None:
        assert self.P.size(self.P.resolve("ar", ratio)) == (704, 384)

    @pytest.mark.parametrize(
        "ratio",
        ["0:0", "0:1", "1:0", "1:1000", "100:1", "5:1", "wide", "", "16:9:1", "-16:9", "1e9:1", 169, None],
    )
    def test_refused(self, ratio: Any) -> None:
        p = self.P.model_copy(update={"default": "bogus"}) if ratio is None else self.P
        with pytest.raises(ParamError) as err:
            p.resolve("ar", ratio)
        assert err.value.reason == "bad_aspect"
        assert err.value.bounds == {"min_ratio": "1:4", "max_ratio": "4:1"}

    def test_max_side_caps_both_sides(self) -> None:
        p = self.P.model_copy(update={"base_pixels": 2048 * 2048, "max_side": 1500})
        w, h = p.size(p.resolve("ar", "4:1"))
        assert w <= 1500 and h <= 1500 and w % 64 == 0
        assert (w, h) == (1472, 384)

    def test_normalized_value_revalidates(self) -> None:
        assert self.P.resolve("ar", self.P.resolve("ar", "16x9")) == "16:9"
