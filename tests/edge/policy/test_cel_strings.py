"""edge/policy/cel_strings.py: CEL's string and list extensions with ngrok's documented values."""

from __future__ import annotations

import pytest

from edge.policy.cel import compile_expression
from edge.policy.cel_strings import MAX_RANGE
from edge.policy.errors import PolicyRuntimeError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'hello'.charAt(4)", "o"),
        ("'hello'.charAt(5)", ""),
        ("'hello mellow'.indexOf('')", 0),
        ("'hello mellow'.indexOf('ello')", 1),
        ("'hello mellow'.indexOf('jello')", -1),
        ("'hello mellow'.indexOf('', 2)", 2),
        ("'hello mellow'.indexOf('ello', 2)", 7),
        ("'hello mellow'.lastIndexOf('')", 12),
        ("'hello mellow'.lastIndexOf('ello')", 7),
        ("'hello mellow'.lastIndexOf('jello')", -1),
        ("'hello mellow'.lastIndexOf('ello', 6)", 1),
        ("'Ärger ÉCOLE'.lower()", "ärger école"),
        ("'ärger école'.upper()", "ÄRGER ÉCOLE"),
        ("'TacoCÆt Xii'.lowerAscii()", "tacocÆt xii"),
        ("'TacoCÆt Xii'.upperAscii()", "TACOCÆT XII"),
        ("'hello mellow'.replace('l', 'L')", "heLLo meLLow"),
        ("'hello mellow'.replace('l', 'L', 2)", "heLLo mellow"),
        ("'hello mellow'.replace('x', 'X')", "hello mellow"),
        ("'hello mellow'.split()", ["hello", "mellow"]),
        ("'hello mellow'.split(' ', 1)", ["hello"]),  # ngrok: at most n pieces, rest dropped
        ("'hello,mellow,hi'.split(',')", ["hello", "mellow", "hi"]),
        ("'hello,mellow,hi'.split(',', 2)", ["hello", "mellow"]),
        ("'tacocat'.substring(4)", "cat"),
        ("'tacocat'.substring(0, 4)", "taco"),
        ("'  \\ttrim\\n    '.trim()", "trim"),
        ("'gums'.reverse()", "smug"),
        ("[1, 2].reverse()", [2, 1]),
        ("'hello %s'.format(['world'])", "hello world"),
        ("'integer: %d'.format([42])", "integer: 42"),
        ("'%f'.format([3.14])", "3.140000"),
        ("'%x'.format([26])", "1a"),
        ("'binary: %b'.format([5])", "binary: 101"),
        ("'bool: %b'.format([true])", "bool: 1"),
        ("'100%% %s'.format([true])", "100% true"),
        ("['hello', 'mellow'].join()", "hellomellow"),
        ("['hello', 'mellow'].join(' ')", "hello mellow"),
        ("[].join('/')", ""),
        ("[3, 2, 1].sort()", [1, 2, 3]),
        ("['b', 'c', 'a'].sort()", ["a", "b", "c"]),
        ("[1, 2, 2, 3, 3, 3].distinct()", [1, 2, 3]),
        ("['b', 'b', 'c', 'a', 'c'].distinct()", ["b", "c", "a"]),
        ("[1, true, 1].distinct().size()", 2),  # CEL's true is not 1
        ("[1, [2, 3], [4]].flatten()", [1, 2, 3, 4]),
        ("[1, [2, [3, 4]]].flatten()", [1, 2, [3, 4]]),
        ("[1, [2, [3, [4]]]].flatten(2)", [1, 2, 3, [4]]),
        ("[1, 2, 3, 4].slice(1, 3)", [2, 3]),
        ("lists.range(5)", [0, 1, 2, 3, 4]),
        ("req.url.path.substring(1).split('/')[0]", "api"),
    ],
)
def test_extensions_give_ngroks_documented_values(text: str, expected: object) -> None:
    activation = {"req": {"url": {"path": "/api/users"}}}
    assert compile_expression(text).value(activation) == expected


@pytest.mark.parametrize(
    "text",
    [
        "'hello'.charAt(-1) == ''",
        "'hello'.charAt(6) == ''",
        "'tacocat'.substring(-1) == ''",
        "'tacocat'.substring(2, 1) == ''",
        "'hello mellow'.lastIndexOf('ello', 20) == 0",
        "'hello mellow'.lastIndexOf('ello', -1) == 0",
        "[1, 'b'].sort() == []",
        "[[1, 2, 3]].sort() == []",
        "[1, [2, [3, [4]]]].flatten(-1) == []",
        "[1, 2].slice(1, 3) == []",
        "'%q'.format([1]) == ''",
        "'%s %s'.format([1]) == ''",
        f"lists.range({MAX_RANGE + 1}).size() == 0",  # bounded: n may come from request data
        "[1].lower() == ''",
    ],
)
def test_out_of_range_and_wrong_types_are_runtime_errors(text: str) -> None:
    with pytest.raises(PolicyRuntimeError):
        compile_expression(text).evaluate({})
