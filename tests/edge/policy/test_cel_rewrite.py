"""edge/policy/cel_rewrite.py: the in-place rewrites, on trees from cel-python's own parser."""

from __future__ import annotations

from typing import Any

import lark
from celpy.celparser import CELParser
from celpy.evaluation import TranspilerTree

from edge.policy.cel import compile_expression
from edge.policy.cel_rewrite import method_call, wrap_in_bool


def parse(text: str) -> lark.Tree[Any]:
    return CELParser(tree_class=TranspilerTree).parse(text)


def first(tree: lark.Tree[Any], kind: str) -> lark.Tree[Any]:
    return next(tree.find_data(kind))


def test_method_call_puts_the_receiver_first() -> None:
    tree = parse("req.x.sha256('base64')")
    call = first(tree, "member_dot_arg")
    method_call(call, "@sha256")
    assert call.data == "primary"
    [dot] = call.children
    assert isinstance(dot, lark.Tree) and dot.data == "dot_ident_arg"
    name, exprlist = dot.children
    assert isinstance(name, lark.Token) and name.value == "@sha256"
    assert isinstance(exprlist, lark.Tree) and len(exprlist.children) == 2
    receiver, argument = exprlist.children
    assert isinstance(receiver, lark.Tree) and receiver.data == "expr"
    assert "member_dot" in {node.data for node in receiver.iter_subtrees()}  # req.x
    assert isinstance(argument, lark.Tree) and "literal" in {
        node.data for node in argument.iter_subtrees()
    }


def test_wrap_in_bool_keeps_the_has_call_inside() -> None:
    tree = parse("has(req.a)")
    call = first(tree, "ident_arg")
    wrap_in_bool(call)
    name = call.children[0]
    assert isinstance(name, lark.Token) and name.value == "bool"
    inner = [node for node in tree.iter_subtrees() if node.data == "ident_arg" and node is not call]
    assert [node.children[0] for node in inner] == ["has"]


def test_rewritten_expressions_evaluate() -> None:
    activation = {"req": {"a": "hello"}}
    assert compile_expression("!has(req.b) && req.a.sha256().size() == 64").evaluate(activation)
    assert compile_expression("'x'.md5() != req.a.md5()").evaluate(activation)
