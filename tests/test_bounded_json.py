"""bounded_json.read_json: JSON from outside the sidecar, within size and depth, never raising."""

from __future__ import annotations

import json

import pytest

from sidecar.bounded_json import MAX_BYTES, MAX_DEPTH, nesting_depth, read_json


def nested(depth: int, leaf: str = "1") -> str:
    """`depth` arrays and objects, alternating, around `leaf`."""
    text = leaf
    for level in range(depth):
        text = f'{{"k{level}": {text}}}' if level % 2 else f"[{text}]"
    return text


class TestDepth:
    def test_exactly_the_limit_is_read(self) -> None:
        """64 levels of arrays and objects decode to the value json.loads gives."""
        text = nested(MAX_DEPTH)
        read = read_json(text)
        assert read.ok
        assert read.value == json.loads(text)

    def test_one_level_more_is_refused(self) -> None:
        """65 levels are refused with the limit named, not decoded."""
        read = read_json(nested(MAX_DEPTH + 1))
        assert (read.value, read.problem) == (None, "nests deeper than 64 levels")

    @pytest.mark.parametrize("depth", [1000, 30_000])
    def test_deep_text_never_reaches_the_decoder(self, depth: int) -> None:
        """Text nested far beyond the recursion limit is a reason, not a RecursionError."""
        read = read_json("[" * depth + "]" * depth)
        assert read.problem == "nests deeper than 64 levels"

    def test_unclosed_brackets_count(self) -> None:
        """Brackets never closed still count: the decoder would descend into them first."""
        assert read_json("[" * 100).problem == "nests deeper than 64 levels"
        assert read_json("[" * 10).problem is not None  # too shallow, but still not JSON

    def test_brackets_inside_strings_do_not_count(self) -> None:
        """Brackets in strings, escaped quotes and backslashes leave the depth alone."""
        text = json.dumps({"a": ["[" * 100, "]" * 100, '\\"[[[[', "{" * 200 + '"']})
        assert nesting_depth(text.encode()) == 2
        read = read_json(text)
        assert read.ok
        assert read.value["a"][2] == '\\"[[[['

    def test_an_escaped_quote_does_not_end_a_string(self) -> None:
        """`\\"` inside a string keeps the scan inside it, so the brackets after it are text."""
        text = '["\\"' + "[" * 100 + '"]'
        assert read_json(text).value == ['"' + "[" * 100]

    def test_many_escaped_quotes_stay_fast(self) -> None:
        """An unterminated string of 30k escaped quotes is refused by the decoder, the scan
        staying linear (a backtracking pattern would take minutes on it)."""
        read = read_json('"' + '\\"' * 30_000, max_bytes=1024 * 1024)
        assert read.problem is not None
        assert read.problem.startswith("is not valid JSON: Unterminated string")


class TestSize:
    def test_the_cap_is_in_utf8_bytes(self) -> None:
        """64 KiB of UTF-8 is read; one byte more is refused, multi-byte characters counted."""
        fits = '"' + "x" * (MAX_BYTES - 2) + '"'
        assert read_json(fits).ok
        assert read_json(fits + " ").problem == "is larger than 64 KiB"
        accented = '"' + "é" * (MAX_BYTES // 2) + '"'  # fewer characters than bytes
        assert len(accented) < MAX_BYTES
        assert read_json(accented).problem == "is larger than 64 KiB"

    def test_the_cap_can_be_set(self) -> None:
        """A caller may give another cap (the manifest's 1 MiB), named in the reason."""
        text = json.dumps(["x" * 100_000])
        assert read_json(text, max_bytes=1024 * 1024).ok
        assert read_json(text).problem == "is larger than 64 KiB"


class TestNotJson:
    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("NaN", "holds NaN, which is not JSON"),
            ('{"a": [Infinity]}', "holds Infinity, which is not JSON"),
            ("-Infinity", "holds -Infinity, which is not JSON"),
            ("[1e400]", "holds a number too large for a float"),
        ],
    )
    def test_numbers_json_cannot_carry(self, text: str, problem: str) -> None:
        """NaN, Infinity and overflowing floats are refused: the sidecar's own JSON could not
        carry them later."""
        assert read_json(text).problem == problem

    def test_an_integer_beyond_the_conversion_limit(self) -> None:
        """An integer of 5000 digits is a reason, not the ValueError int() raises."""
        read = read_json("[" + "9" * 5000 + "]")
        assert read.problem is not None
        assert read.problem.startswith("is not valid JSON: Exceeds the limit")

    def test_text_that_is_not_utf8(self) -> None:
        """Bytes that are not UTF-8 reach Python's environment as lone surrogates: refused."""
        undecodable = b'{"a": "\xff"}'.decode("utf-8", "surrogateescape")
        assert read_json(undecodable).problem == "is not UTF-8 text"

    def test_a_lone_surrogate_escape(self) -> None:
        """`\\ud800` alone decodes to no character: refused; a surrogate pair is an emoji."""
        lone = read_json('{"k": ["a", "\\ud800"]}')
        assert lone.problem == "holds a lone UTF-16 surrogate escape, which is not text"
        assert read_json('{"\\udfff": 1}').problem == lone.problem
        assert read_json('"\\ud83d\\ude00"').value == "\U0001f600"

    @pytest.mark.parametrize("text", ["", "   ", "{", "[1,]", "{'a': 1}", "]]]]", '"\\'])
    def test_syntax_errors_say_where(self, text: str) -> None:
        """Invalid JSON is a reason with line and column, and never quotes the text."""
        read = read_json(text)
        assert read.value is None
        assert read.problem is not None
        assert read.problem.startswith("is not valid JSON: ")
        assert "line 1, column" in read.problem

    def test_a_reason_never_quotes_the_value(self) -> None:
        """Whatever the problem, the reason carries none of the text (player data)."""
        secret = "player-secret-0123456789"
        for text in (f'{{"{secret}": NaN}}', f'["{secret}"', f'["{secret}", 1e999]'):
            problem = read_json(text).problem
            assert problem is not None
            assert secret not in problem
