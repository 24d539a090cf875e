"""Parsing the current policy format: tokens, columns, parameters, directives, errors."""

from __future__ import annotations

import pytest

from septa.qrexec.policy import Action, Policy, PolicySyntaxError, Rule, parse_text
from septa.qrexec.policy.parser import Compat40, Include, IncludeDir, IncludeService, parse_line
from septa.qrexec.policy.tokens import Kind, Place, parse_token


def rule(line: str) -> Rule:
    item = parse_line(line, "f.policy", 7)
    assert isinstance(item, Rule)
    return item


def syntax_error(line: str) -> str:
    with pytest.raises(PolicySyntaxError) as info:
        parse_line(line, "f.policy", 7)
    assert str(info.value).startswith("f.policy:7: ")
    assert info.value.path == "f.policy" and info.value.lineno == 7
    return str(info.value)


# --- tokens --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("work", Kind.NAME, "work"),
        ("sys-net.2_a", Kind.NAME, "sys-net.2_a"),
        ("uuid:11111111-2222-3333-4444-55555555AAAA", Kind.UUID,
         "11111111-2222-3333-4444-55555555aaaa"),
        ("uuid:00000000-0000-0000-0000-000000000000", Kind.ADMINVM, ""),
        ("@adminvm", Kind.ADMINVM, ""),
        ("dom0", Kind.ADMINVM, ""),
        ("@anyvm", Kind.ANYVM, ""),
        ("*", Kind.WILDCARD, ""),
        ("@default", Kind.DEFAULT, ""),
        ("@dispvm", Kind.DISPVM, ""),
        ("@dispvm:dvm", Kind.DISPVM_TEMPLATE, "dvm"),
        ("@dispvm:uuid:11111111-2222-3333-4444-555555555555", Kind.DISPVM_TEMPLATE,
         "uuid:11111111-2222-3333-4444-555555555555"),
        ("@dispvm:@tag:t", Kind.DISPVM_TAG, "t"),
        ("@tag:created-by-dom0", Kind.TAG, "created-by-dom0"),
        ("@type:AppVM", Kind.TYPE, "AppVM"),
    ],
)
def test_token_kinds(text: str, kind: Kind, value: str) -> None:
    token = parse_token(text, Place.TARGET)
    assert (token.kind, token.value, str(token)) == (kind, value, text)


@pytest.mark.parametrize(
    "text",
    ["", "@", "@any", "@anyvm2", "@tag:", "@type:", "@dispvm:", "@dispvm:@tag:", "@dispvm:@type:x",
     "@tag:a b", "@tag:a$", "@type:App-VM", "9work", "wo/rk", "w#rk", "uuid:nope", "$anyvm",
     "a" * 32],
)
def test_invalid_tokens(text: str) -> None:
    with pytest.raises(ValueError):
        parse_token(text, Place.TARGET)


@pytest.mark.parametrize(
    ("text", "place", "ok"),
    [
        ("@default", Place.SOURCE, False),
        ("@dispvm", Place.SOURCE, False),
        ("@dispvm:dvm", Place.SOURCE, True),
        ("@dispvm:@tag:t", Place.SOURCE, True),
        ("@anyvm", Place.SOURCE, True),
        ("*", Place.SOURCE, True),
        ("@default", Place.TARGET, True),
        ("@dispvm", Place.TARGET, True),
        ("@anyvm", Place.REDIRECT, False),
        ("*", Place.REDIRECT, False),
        ("@default", Place.REDIRECT, False),
        ("@tag:t", Place.REDIRECT, False),
        ("@type:AppVM", Place.REDIRECT, False),
        ("@dispvm:@tag:t", Place.REDIRECT, False),
        ("@dispvm", Place.REDIRECT, True),
        ("@dispvm:dvm", Place.REDIRECT, True),
        ("@adminvm", Place.REDIRECT, True),
        ("dom0", Place.REDIRECT, True),
        ("vault", Place.REDIRECT, True),
    ],
)
def test_where_tokens_may_stand(text: str, place: Place, ok: bool) -> None:
    if ok:
        parse_token(text, place)
    else:
        with pytest.raises(ValueError, match="cannot be used"):
            parse_token(text, place)


# --- rules ---------------------------------------------------------------------------


def test_full_rule() -> None:
    r = rule("qubes.Filecopy +arg work @default ask target=vault default_target=vault "
             "user=root notify=yes autostart=no")
    assert r.service == "qubes.Filecopy" and r.argument == "arg"
    assert r.source.kind is Kind.NAME and r.target.kind is Kind.DEFAULT
    assert r.action is Action.ASK
    assert r.redirect is not None and r.redirect.value == "vault"
    assert r.default_target is not None and r.default_target.value == "vault"
    assert (r.user, r.notify, r.autostart) == ("root", True, False)
    assert r.origin == "f.policy:7"


def test_defaults() -> None:
    r = rule("* * @anyvm @anyvm allow")
    assert (r.service, r.argument, r.redirect, r.user, r.notify, r.autostart) == (
        None, None, None, None, False, True,
    )
    assert rule("a.B + @anyvm @anyvm deny").argument == ""
    assert rule("a.B + @anyvm @anyvm deny").notify is True


def test_blanks_and_comments() -> None:
    assert parse_line("", "f", 1) is None
    assert parse_line("   \t ", "f", 1) is None
    assert parse_line("# a.B * @anyvm @anyvm allow", "f", 1) is None
    assert parse_line("  # comment", "f", 1) is None
    r = rule("  a.B\t*   @anyvm\t@anyvm   allow  ")
    assert r.service == "a.B"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a.B * @anyvm @anyvm", "wrong number of fields"),
        ("a.B", "wrong number of fields"),
        ("a.B * @anyvm @anyvm permit", "invalid action"),
        ("a.B * @anyvm @anyvm Allow", "invalid action"),
        ("a.B arg @anyvm @anyvm allow", "does not start with '+'"),
        ("* +arg @anyvm @anyvm allow", "only * argument allowed for * service"),
        ("a+B * @anyvm @anyvm allow", "invalid characters"),
        ("a$B * @anyvm @anyvm allow", "invalid characters"),
        ("a.B +a$ @anyvm @anyvm allow", "invalid characters"),
        ("a.B +a/b @anyvm @anyvm allow", "invalid characters"),
        ("x" * 65 + " * @anyvm @anyvm allow", "longer than 64 bytes"),
        ("a.B +" + "x" * 65 + " @anyvm @anyvm allow", "longer than 64 bytes"),
        ("a.B * @default @anyvm allow", "cannot be used as the source"),
        ("a.B * @dispvm @anyvm allow", "cannot be used as the source"),
        ("a.B * @anyvm @bogus allow", "unknown token"),
        ("a.B * @anyvm @anyvm allow target=@anyvm", "cannot be used as a target="),
        ("a.B * @anyvm @anyvm ask default_target=@tag:x", "cannot be used as a target="),
        ("a.B * @anyvm @default allow", "must specify target="),
        ("a.B * @anyvm @default allow user=root", "must specify target="),
        ("a.B * @anyvm @anyvm allow target", "invalid action parameter"),
        ("a.B * @anyvm @anyvm allow target=a target=b", "given twice"),
        ("a.B * @anyvm @anyvm allow default_target=a", "invalid parameter 'default_target'"),
        ("a.B * @anyvm @anyvm deny target=a", "invalid parameter 'target'"),
        ("a.B * @anyvm @anyvm deny user=a", "invalid parameter 'user'"),
        ("a.B * @anyvm @anyvm allow bogus=1", "invalid parameter 'bogus'"),
        ("a.B * @anyvm @anyvm allow notify=true", "must be 'yes' or 'no'"),
        ("a.B * @anyvm @anyvm allow autostart=", "empty value"),
        ("a.B * @anyvm @anyvm allow user=a:b", "invalid user name"),
        ("a.B * @anyvm @anyvm allow # inline comment", "invalid action parameter"),
        ("!bogus", "invalid directive"),
        ("!include", "invalid number of params"),
        ("!include a b", "invalid number of params"),
        ("!include-dir", "invalid number of params"),
        ("!include-service a.B * ", "invalid number of params"),
        ("!include-service * +x file", "only * argument allowed"),
        ("!include-service a$ * file", "invalid characters"),
        ("!compat-4.0 x", "invalid number of params"),
    ],
)
def test_syntax_errors(line: str, message: str) -> None:
    assert message in syntax_error(line)


def test_allow_towards_default_with_target_is_fine() -> None:
    assert rule("a.B * @anyvm @default allow target=dom0").redirect is not None
    assert rule("a.B * @anyvm @default ask").action is Action.ASK
    assert rule("a.B * @anyvm @default deny").action is Action.DENY


def test_deny_accepts_notify() -> None:
    assert rule("a.B * @anyvm @anyvm deny notify=no").notify is False


# --- directives ----------------------------------------------------------------------


def test_directives() -> None:
    items = parse_text(
        "!include include/a\n!include-dir /x/y\n!include-service a.B +arg file\n"
        "!include-service * * other\n!compat-4.0\n",
        "f.policy",
    )
    assert items == [
        Include("include/a", "f.policy", 1),
        IncludeDir("/x/y", "f.policy", 2),
        IncludeService("a.B", "arg", "file", "f.policy", 3),
        IncludeService(None, None, "other", "f.policy", 4),
        Compat40("f.policy", 5),
    ]


def test_error_names_the_line_in_a_longer_text() -> None:
    text = "# header\na.B * @anyvm @anyvm allow\n\na.B * @anyvm @anyvm alow\n"
    with pytest.raises(PolicySyntaxError, match=r"^x\.policy:4: invalid action"):
        parse_text(text, "x.policy")


def test_policy_from_text_refuses_directives() -> None:
    with pytest.raises(PolicySyntaxError, match="s:2"):
        Policy.from_text("a.B * @anyvm @anyvm allow\n!include x", "s")
