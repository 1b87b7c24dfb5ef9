"""The shared command parser: flags, smart punctuation from phones, clear errors."""

from __future__ import annotations

import pytest

from bot.parsing import ParseError, normalize_aspect, parse_prompt


def test_plain_prompt_and_flags() -> None:
    p = parse_prompt('a lighthouse at dusk --ar 16:9 --seed 42 --steps 30 --neg "blurry, ugly" --wf txt2img')
    assert p.prompt == "a lighthouse at dusk"
    assert p.params == {"ar": "16:9", "seed": 42, "steps": 30, "negative": "blurry, ugly"}
    assert p.workflow == "txt2img"


def test_smart_quotes_and_em_dash_from_phones() -> None:
    p = parse_prompt("a cat —ar 3:2 —neg “low quality, text” –seed 7 —batch 2")
    assert p.prompt == "a cat"
    assert p.params == {"ar": "3:2", "negative": "low quality, text", "seed": 7, "batch": 2}


def test_em_dash_followed_by_dash_and_equals_form() -> None:
    p = parse_prompt("x —-steps=12 --ar=1x1")
    assert p.params == {"steps": 12, "ar": "1:1"}


def test_quotes_and_apostrophes_in_prompt_are_kept() -> None:
    p = parse_prompt('a "red" car, don\'t crop it --seed 1')
    assert p.prompt == 'a "red" car, don\'t crop it'


def test_single_quoted_value_with_apostrophe_inside() -> None:
    p = parse_prompt("cat --neg 'dog's hair, fur' --seed 3")
    assert p.params["negative"] == "dog's hair, fur"
    assert p.params["seed"] == 3


def test_unclosed_quote_is_tolerated() -> None:
    p = parse_prompt('cat --neg "blurry')
    assert p.params["negative"] == "blurry"


def test_flags_anywhere_and_later_wins() -> None:
    p = parse_prompt("--seed 1 a cat --seed 2 sitting")
    assert p.prompt == "a cat sitting"
    assert p.params == {"seed": 2}


def test_aliases() -> None:
    p = parse_prompt("x --workflow Upscale --negative bad --n 3 --aspect 2:3")
    assert p.workflow == "upscale"
    assert p.params == {"negative": "bad", "batch": 3, "ar": "2:3"}


@pytest.mark.parametrize(
    ("text", "code", "flag"),
    [
        ("cat --size 5", "unknown_flag", "--size"),
        ("cat —foo bar", "unknown_flag", "--foo"),
        ("cat --seed", "missing_value", "--seed"),
        ("cat --neg --seed 1", "missing_value", "--neg"),
        ("cat --steps many", "not_integer", "--steps"),
        ("cat --seed 1.5", "not_integer", "--seed"),
        ("cat --cfg high", "not_number", "--cfg"),
        ("cat --cfg nan", "not_number", "--cfg"),
        ("cat --ar wide", "bad_aspect", "--ar"),
    ],
)
def test_errors_name_the_flag(text: str, code: str, flag: str) -> None:
    with pytest.raises(ParseError) as exc:
        parse_prompt(text)
    assert exc.value.code == code
    assert exc.value.flag == flag


def test_zero_aspect_is_left_to_the_manifest() -> None:
    assert parse_prompt("x --ar 0:0").params == {"ar": "0:0"}
    assert normalize_aspect("16 x 9") == "16:9"
    assert normalize_aspect("16") is None


def test_empty_and_dash_words() -> None:
    assert parse_prompt("").prompt == ""
    assert parse_prompt("black — white - grey").prompt == "black — white - grey"


def test_cfg_decimal_comma() -> None:
    assert parse_prompt("x --cfg 7,5").params == {"cfg": 7.5}


def test_hires_steps_flag_names_the_second_pass() -> None:
    p = parse_prompt("a castle --wf hires --steps 4 --hires-steps 3")
    assert p.params == {"steps": 4, "hires_steps": 3}
    assert parse_prompt("x —hires-steps=5").params == {"hires_steps": 5}
    assert parse_prompt("x --hires_steps 6").params == {"hires_steps": 6}
    with pytest.raises(ParseError) as err:
        parse_prompt("x --hires-steps")
    assert err.value.code == "missing_value" and err.value.example == "--hires-steps 10"
    with pytest.raises(ParseError) as err:
        parse_prompt("x --hires-foo 2")
    assert err.value.code == "unknown_flag" and err.value.flag == "--hires-foo"
