"""The Qubes 4.0 format: per-service files, ``$`` tokens, comma parameters, ``!compat-4.0``."""

from __future__ import annotations

from pathlib import Path

import pytest

import septa.paths
from septa.qrexec.policy import (
    NO_MATCH,
    Action,
    Allow,
    Ask,
    Deny,
    Policy,
    PolicySyntaxError,
    Request,
    Rule,
    load_policy,
)
from septa.qrexec.policy.legacy import (
    LegacyInclude,
    legacy_files,
    parse_legacy_line,
    parse_legacy_text,
)
from septa.qrexec.policy.tokens import Kind
from tests.unit.test_policy_evaluate import INFO


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def legacy_rule(line: str, service: str | None = "a.B", argument: str | None = None) -> Rule:
    item = parse_legacy_line(line, service, argument, "old", 3)
    assert isinstance(item, Rule)
    return item


def test_tokens_with_dollar() -> None:
    r = legacy_rule("$anyvm $dispvm:$tag:x allow")
    assert (r.source.kind, r.target.kind, r.target.value) == (Kind.ANYVM, Kind.DISPVM_TAG, "x")
    assert legacy_rule("$tag:a $type:AppVM deny").source.kind is Kind.TAG
    assert legacy_rule("work $adminvm allow").target.kind is Kind.ADMINVM
    assert legacy_rule("work $default allow,target=$dispvm").redirect is not None
    assert legacy_rule("@anyvm @anyvm allow").source.kind is Kind.ANYVM


def test_comma_parameters() -> None:
    r = legacy_rule("$anyvm $anyvm ask,default_target=vault,user=root")
    assert r.action is Action.ASK
    assert r.default_target is not None and r.default_target.value == "vault"
    assert r.user == "root"
    r = legacy_rule("$anyvm $anyvm allow,target=dom0 user=root")
    assert r.redirect is not None and r.redirect.kind is Kind.ADMINVM and r.user == "root"


def test_service_and_argument_come_from_outside() -> None:
    r = legacy_rule("$anyvm $anyvm deny", "q.Svc", "arg")
    assert (r.service, r.argument, r.origin) == ("q.Svc", "arg", "old:3")
    r = legacy_rule("$anyvm $anyvm deny", None, None)
    assert (r.service, r.argument) == (None, None)


def test_includes_comments_and_blanks() -> None:
    items = parse_legacy_text(
        "# comment\n\n$include:/etc/qubes-rpc/policy/include/x\n$anyvm $anyvm deny\n",
        "a.B", None, "old",
    )
    assert items[0] == LegacyInclude("/etc/qubes-rpc/policy/include/x", "old", 3)
    assert isinstance(items[1], Rule) and items[1].lineno == 4


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("$anyvm $anyvm", "wrong number of fields"),
        ("$anyvm", "wrong number of fields"),
        ("$anyvm $anyvm permit", "invalid action"),
        ("$anyvm $anyvm allow,bogus=1", "invalid parameter"),
        ("$anyvm $default allow", "must specify target="),
        ("$include:", "invalid include"),
        ("$include:a b", "invalid include"),
        ("$bogus $anyvm allow", "unknown token"),
    ],
)
def test_legacy_syntax_errors(line: str, message: str) -> None:
    with pytest.raises(PolicySyntaxError, match=f"^old:3: .*{message}"):
        parse_legacy_line(line, "a.B", None, "old", 3)


def test_legacy_files_order_and_filtering(tmp_path: Path) -> None:
    for name in ("b.Svc", "a.Svc+y", "a.Svc", "a.Svc+x", "a.Svc+", "c.Svc+z", ".hidden",
                 "a.Svc.rpmnew", "a.Svc.swp", "bad name", "d.Svc~x"):
        write(tmp_path / name, "")
    (tmp_path / "include").mkdir()
    listed = [(s, a, p.name) for s, a, p in legacy_files(tmp_path)]
    assert listed == [
        ("a.Svc", "", "a.Svc+"),
        ("a.Svc", "x", "a.Svc+x"),
        ("a.Svc", "y", "a.Svc+y"),
        ("a.Svc", None, "a.Svc"),
        ("b.Svc", None, "b.Svc"),
        ("c.Svc", "z", "c.Svc+z"),
    ]


# --- !compat-4.0 ---------------------------------------------------------------------


@pytest.fixture
def legacy(septa_root: Path) -> Path:
    path = septa.paths.current().legacy_policy_dir
    path.mkdir(parents=True)
    return path


@pytest.fixture
def etc(septa_root: Path) -> Path:
    path = septa.paths.current().policy_dir
    path.mkdir(parents=True)
    return path


def decide(policy: Policy, source: str, target: str, call: str) -> Allow | Ask | Deny:
    return policy.evaluate(Request.parse(source, target, call), INFO)


def test_compat_reads_the_legacy_dir_at_the_directive(etc: Path, legacy: Path) -> None:
    write(legacy / "qubes.Filecopy", "work vault allow\n$anyvm $anyvm ask\n")
    write(etc / "30-user.policy", "qubes.Filecopy * personal vault allow\n")
    write(etc / "35-compat.policy", "!compat-4.0\n")
    write(etc / "90-default.policy", "qubes.Filecopy * @anyvm @anyvm deny\n")
    policy = load_policy()
    assert isinstance(decide(policy, "personal", "vault", "qubes.Filecopy"), Allow)
    decision = decide(policy, "work", "vault", "qubes.Filecopy")
    assert isinstance(decision, Allow) and decision.rule == f"{legacy}/qubes.Filecopy:1"
    assert isinstance(decide(policy, "work", "personal", "qubes.Filecopy"), Ask)


def test_compat_argument_file_wins_then_denies(etc: Path, legacy: Path) -> None:
    write(legacy / "test.Svc+special", "work vault allow\n")
    write(legacy / "test.Svc", "work personal allow\n")
    write(etc / "35-compat.policy", "!compat-4.0\n")
    write(etc / "90-default.policy", "* * @anyvm @anyvm allow\n")
    policy = load_policy()
    assert isinstance(decide(policy, "work", "vault", "test.Svc+special"), Allow)
    # the +arg file ends with the implicit deny of 4.0: no fall-through to the plain file
    decision = decide(policy, "work", "personal", "test.Svc+special")
    assert isinstance(decision, Deny) and decision.rule == f"{legacy}/test.Svc+special"
    decision = decide(policy, "work", "dom0", "test.Svc+special")
    assert isinstance(decision, Deny) and decision.rule == f"{legacy}/test.Svc+special"
    # the plain file applies to other arguments, then falls through to the current policy
    assert isinstance(decide(policy, "work", "personal", "test.Svc+other"), Allow)
    decision = decide(policy, "work", "sys-net", "test.Svc+other")
    assert isinstance(decision, Allow) and decision.rule == f"{etc}/90-default.policy:1"


def test_compat_includes(etc: Path, legacy: Path) -> None:
    write(legacy / "include/common", "work vault allow\n")
    write(legacy / "include/more", "work personal allow\n")
    write(
        legacy / "a.Svc",
        "$include:include/common\n$include:/etc/qubes-rpc/policy/include/more\n",
    )
    write(etc / "35-compat.policy", "!compat-4.0\n")
    policy = load_policy()
    assert [(r.service, Path(r.path).name) for r in policy.rules] == [
        ("a.Svc", "common"), ("a.Svc", "more"),
    ]


def test_compat_errors_name_the_legacy_file(etc: Path, legacy: Path) -> None:
    bad = write(legacy / "a.Svc", "work vault allow\nwork vault\n")
    write(etc / "35-compat.policy", "!compat-4.0\n")
    with pytest.raises(PolicySyntaxError, match=f"^{bad}:2: wrong number of fields"):
        load_policy()


def test_compat_without_legacy_dir_adds_nothing(etc: Path) -> None:
    write(etc / "35-compat.policy", "!compat-4.0\n")
    policy = load_policy()
    assert len(policy) == 0
    assert decide(policy, "work", "vault", "a.Svc") == Deny(NO_MATCH)


def test_legacy_dir_is_only_read_through_compat(etc: Path, legacy: Path) -> None:
    write(legacy / "a.Svc", "work vault allow\n")
    write(etc / "30-user.policy", "b.Svc * @anyvm @anyvm deny\n")
    assert len(load_policy()) == 1
