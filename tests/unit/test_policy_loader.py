"""Loading the policy from files: order, names, includes, loops, fail-closed, reloading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import septa.paths
from septa.qrexec.policy import (
    NO_MATCH,
    Allow,
    Deny,
    Policy,
    PolicyCache,
    PolicyError,
    PolicySyntaxError,
    Request,
    default_policy_dirs,
    load_policy,
)
from septa.qrexec.policy.loader import MAX_DEPTH
from tests.unit.test_policy_evaluate import INFO


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def etc(septa_root: Path) -> Path:
    path = septa.paths.current().policy_dir
    path.mkdir(parents=True)
    return path


@pytest.fixture
def run(septa_root: Path) -> Path:
    path = septa_root / "run/qubes/policy.d"
    path.mkdir(parents=True)
    return path


def decide(policy: Policy, source: str = "work", target: str = "vault",
           call: str = "test.Svc") -> Allow | Deny:
    decision = policy.evaluate(Request.parse(source, target, call), INFO)
    assert isinstance(decision, Allow | Deny)
    return decision


def test_default_dirs_follow_septa_root(septa_root: Path) -> None:
    assert default_policy_dirs() == [
        septa_root / "run/qubes/policy.d", septa_root / "etc/qubes/policy.d",
    ]


def test_no_policy_directories_means_deny_everything(septa_root: Path) -> None:
    policy = load_policy()
    assert len(policy) == 0
    assert decide(policy) == Deny(NO_MATCH)


def test_files_read_in_c_locale_order(etc: Path) -> None:
    write(etc / "50-b.policy", "test.Svc * @anyvm @anyvm deny\n")
    write(etc / "30-z.policy", "test.Svc * @anyvm @anyvm allow\n")
    write(etc / "30-a.policy", "other.Svc * @anyvm @anyvm allow\n")
    policy = load_policy()
    assert [Path(r.path).name for r in policy.rules] == [
        "30-a.policy", "30-z.policy", "50-b.policy",
    ]
    decision = decide(policy)
    assert isinstance(decision, Allow) and decision.rule == f"{etc}/30-z.policy:1"


def test_only_policy_files_are_read(etc: Path) -> None:
    write(etc / "README", "garbage\n")
    write(etc / "30-user.policy.rpmnew", "garbage\n")
    write(etc / ".30-user.policy.swp", "garbage\n")
    write(etc / ".hidden.policy", "garbage\n")
    (etc / "sub.policy").mkdir()
    write(etc / "30-user.policy", "test.Svc * @anyvm @anyvm allow\n")
    assert len(load_policy()) == 1


@pytest.mark.parametrize("name", ["30-User.policy", "30 user.policy", "30+user.policy"])
def test_badly_named_policy_file_refuses_everything(etc: Path, name: str) -> None:
    write(etc / "10-good.policy", "test.Svc * @anyvm @anyvm allow\n")
    write(etc / name, "test.Svc * @anyvm @anyvm allow\n")
    with pytest.raises(PolicyError, match="invalid policy file name"):
        load_policy()


def test_runtime_dir_hides_the_same_name_and_merges_order(etc: Path, run: Path) -> None:
    write(etc / "30-user.policy", "test.Svc * @anyvm @anyvm deny\n")
    write(run / "30-user.policy", "test.Svc * @anyvm @anyvm allow\n")
    write(run / "20-first.policy", "test.Svc * work personal allow\n")
    write(etc / "40-last.policy", "test.Svc * work sys-net allow\n")
    policy = load_policy()
    assert [r.path for r in policy.rules] == [
        str(run / "20-first.policy"), str(run / "30-user.policy"), str(etc / "40-last.policy"),
    ]


def test_explicit_dirs(tmp_path: Path) -> None:
    mine = write(tmp_path / "mine" / "10-a.policy", "test.Svc * @anyvm @anyvm allow\n").parent
    assert isinstance(decide(load_policy([mine])), Allow)


def test_a_policy_dir_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not a directory"):
        load_policy([write(tmp_path / "file", "")])


def test_broken_file_refuses_the_whole_policy_with_file_and_line(etc: Path) -> None:
    write(etc / "10-good.policy", "test.Svc * @anyvm @anyvm allow\n")
    bad = write(etc / "20-bad.policy", "# fine\n\nother.Svc * @anyvm @anyvm allow\nbroken line\n")
    write(etc / "30-good.policy", "x.Y * @anyvm @anyvm allow\n")
    with pytest.raises(PolicySyntaxError) as info:
        load_policy()
    assert str(info.value) == f"{bad}:4: wrong number of fields"
    decision = PolicyCache().evaluate(Request.parse("work", "vault", "test.Svc"), INFO)
    assert isinstance(decision, Deny)
    assert decision.reason == f"policy error: {bad}:4: wrong number of fields"


def test_unreadable_file_refuses_the_policy(etc: Path) -> None:
    write(etc / "10-a.policy", "test.Svc * @anyvm @anyvm allow\n").write_bytes(b"\xff\xfe")
    with pytest.raises(PolicyError, match="10-a.policy"):
        load_policy()


# --- includes ------------------------------------------------------------------------


def test_include_relative_to_the_policy_dir(etc: Path) -> None:
    write(etc / "include/first", "!include include/second\ntest.Svc * work personal allow\n")
    write(etc / "include/second", "test.Svc * work vault allow\n")
    write(etc / "30-user.policy", "!include include/first\ntest.Svc * @anyvm @anyvm deny\n")
    policy = load_policy()
    assert [(Path(r.path).name, r.lineno) for r in policy.rules] == [
        ("second", 1), ("first", 2), ("30-user.policy", 2),
    ]
    assert decide(policy).rule == f"{etc}/include/second:1"


def test_include_absolute_path_is_under_septa_root(etc: Path, septa_root: Path) -> None:
    write(etc / "include/rules", "test.Svc * work vault allow\n")
    write(etc / "30-a.policy", "!include /etc/qubes/policy.d/include/rules\n")
    assert isinstance(decide(load_policy()), Allow)
    write(etc / "30-a.policy", f"!include {etc}/include/rules\n")
    assert isinstance(decide(load_policy()), Allow)
    write(septa_root / "srv/x", "test.Svc * work vault deny\n")
    write(etc / "30-a.policy", "!include /srv/x\n")
    assert isinstance(decide(load_policy()), Deny)


def test_missing_include_refuses_the_policy(etc: Path) -> None:
    policy_file = write(etc / "30-a.policy", "test.Svc * @anyvm @anyvm allow\n!include nothere\n")
    with pytest.raises(PolicySyntaxError, match=f"^{policy_file}:2: !include: not a file"):
        load_policy()
    (etc / "adir").mkdir()
    write(policy_file, "!include adir\n")
    with pytest.raises(PolicySyntaxError, match="not a file"):
        load_policy()


def test_include_dir(etc: Path, septa_root: Path) -> None:
    extra = septa_root / "srv/extra"
    write(extra / "20-b.policy", "test.Svc * work personal allow\n")
    write(extra / "10-a.policy", "test.Svc * work vault allow\n")
    write(extra / "notes.txt", "garbage")
    write(etc / "30-a.policy", f"!include-dir {extra}\n")
    policy = load_policy()
    assert [Path(r.path).name for r in policy.rules] == ["10-a.policy", "20-b.policy"]


def test_include_dir_relative_and_errors(etc: Path) -> None:
    write(etc / "sub/10-a.policy", "test.Svc * work vault allow\n")
    main = write(etc / "30-a.policy", "!include-dir sub\n")
    assert len(load_policy()) == 1
    write(etc / "sub/Bad.policy", "")
    with pytest.raises(PolicySyntaxError, match=f"^{main}:1: invalid policy file name"):
        load_policy()
    write(main, "\n!include-dir nothere\n")
    with pytest.raises(PolicySyntaxError, match=f"^{main}:2: not a directory"):
        load_policy()


def test_include_service(etc: Path) -> None:
    write(etc / "include/filecopy", "$anyvm vault deny\n$anyvm $anyvm ask,default_target=vault\n")
    write(etc / "include/admin", "$tag:work $adminvm allow,target=dom0\n")
    write(
        etc / "30-a.policy",
        "!include-service qubes.Filecopy * include/filecopy\n"
        "!include-service admin.vm.List + include/admin\n"
        "!include-service * * include/admin\n",
    )
    policy = load_policy()
    rules = policy.rules
    assert [(r.service, r.argument) for r in rules] == [
        ("qubes.Filecopy", None), ("qubes.Filecopy", None), ("admin.vm.List", ""), (None, None),
    ]
    assert rules[1].default_target is not None and rules[1].default_target.value == "vault"
    assert decide(policy, "personal", "vault", "qubes.Filecopy").rule == f"{etc}/include/filecopy:1"
    assert isinstance(decide(policy, "work", "dom0", "admin.vm.List"), Allow)
    assert decide(policy, "work", "dom0", "admin.vm.List+x").rule == f"{etc}/include/admin:1"


def test_include_service_errors_name_the_included_file(etc: Path) -> None:
    bad = write(etc / "include/svc", "$anyvm $anyvm allow\n$anyvm\n")
    write(etc / "30-a.policy", "!include-service a.B * include/svc\n")
    with pytest.raises(PolicySyntaxError, match=f"^{bad}:2: wrong number of fields"):
        load_policy()


def test_same_file_may_be_included_twice(etc: Path) -> None:
    write(etc / "include/x", "test.Svc * work vault allow\n")
    write(etc / "30-a.policy", "!include include/x\n!include include/x\n")
    assert len(load_policy()) == 2


@pytest.mark.parametrize(
    "files",
    [
        {"30-a.policy": "!include 30-a.policy\n"},
        {"30-a.policy": "!include include/b\n", "include/b": "!include include/c\n",
         "include/c": "\n!include include/b\n"},
        {"30-a.policy": "!include-dir .\n"},
        {"30-a.policy": "!include-service a.B * include/s\n", "include/s": "$include:include/s\n"},
        {"30-a.policy": "!include include/link\n", "include/b": "!include include/link\n"},
    ],
)
def test_include_loops_are_refused(etc: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        write(etc / name, text)
    if any("include/link" in t for t in files.values()):
        os.symlink(etc / "include/b", etc / "include/link")
    with pytest.raises(PolicySyntaxError, match="include loop"):
        load_policy()


def test_include_depth_is_limited(etc: Path) -> None:
    for i in range(MAX_DEPTH + 2):
        write(etc / f"include/f{i}", f"!include include/f{i + 1}\n")
    write(etc / f"include/f{MAX_DEPTH + 2}", "test.Svc * work vault allow\n")
    write(etc / "30-a.policy", "!include include/f0\n")
    with pytest.raises(PolicySyntaxError, match="nested deeper"):
        load_policy()


# --- reloading -----------------------------------------------------------------------


def touch_later(path: Path, text: str) -> None:
    """Rewrite ``path`` and make sure its mtime moves even on a coarse clock."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    write(path, text)
    os.utime(path, ns=(before + 10_000_000, before + 10_000_000))


def test_cache_parses_once(etc: Path) -> None:
    write(etc / "30-a.policy", "test.Svc * @anyvm @anyvm allow\n")
    cache = PolicyCache()
    first = cache.get()
    for _ in range(5):
        assert cache.get() is first
    assert cache.loads == 1


def test_cache_reloads_a_changed_file(etc: Path) -> None:
    path = write(etc / "30-a.policy", "test.Svc * @anyvm @anyvm allow\n")
    cache = PolicyCache()
    request = Request.parse("work", "vault", "test.Svc")
    assert isinstance(cache.evaluate(request, INFO), Allow)
    touch_later(path, "test.Svc * @anyvm @anyvm deny\n")
    assert isinstance(cache.evaluate(request, INFO), Deny)
    assert cache.loads == 2


def test_cache_sees_new_and_removed_files(etc: Path, run: Path) -> None:
    cache = PolicyCache()
    request = Request.parse("work", "vault", "test.Svc")
    assert cache.evaluate(request, INFO) == Deny(NO_MATCH)
    write(run / "10-new.policy", "test.Svc * @anyvm @anyvm allow\n")
    assert isinstance(cache.evaluate(request, INFO), Allow)
    (run / "10-new.policy").unlink()
    assert cache.evaluate(request, INFO) == Deny(NO_MATCH)


def test_cache_sees_a_policy_dir_appear(septa_root: Path) -> None:
    cache = PolicyCache()
    assert len(cache.get()) == 0
    write(septa.paths.current().policy_dir / "30-a.policy", "test.Svc * @anyvm @anyvm allow\n")
    assert len(cache.get()) == 1


def test_cache_watches_included_files(etc: Path) -> None:
    inc = write(etc / "include/x", "test.Svc * @anyvm @anyvm allow\n")
    write(etc / "30-a.policy", "!include include/x\n")
    cache = PolicyCache()
    assert len(cache.get()) == 1
    touch_later(inc, "test.Svc * @anyvm @anyvm allow\ntest.Svc * @anyvm @anyvm deny\n")
    assert len(cache.get()) == 2


def test_cache_refuses_a_broken_policy_then_recovers(etc: Path) -> None:
    path = write(etc / "30-a.policy", "test.Svc * @anyvm @anyvm allow\n")
    cache = PolicyCache()
    request = Request.parse("work", "vault", "test.Svc")
    assert isinstance(cache.evaluate(request, INFO), Allow)
    touch_later(path, "test.Svc * @anyvm @anyvm allow\n!include missing\n")
    decision = cache.evaluate(request, INFO)
    assert isinstance(decision, Deny) and decision.reason.startswith("policy error: ")
    with pytest.raises(PolicyError):
        cache.get()
    assert cache.loads == 2  # the broken policy is not re-read while nothing changes
    write(etc / "missing", "\n")  # creating the missing include fixes the policy
    assert isinstance(cache.evaluate(request, INFO), Allow)
    assert cache.loads == 3


def test_cache_min_interval(etc: Path) -> None:
    path = write(etc / "30-a.policy", "test.Svc * @anyvm @anyvm allow\n")
    now = [100.0]
    cache = PolicyCache(min_interval=1.0, clock=lambda: now[0])
    assert len(cache.get()) == 1
    touch_later(path, "test.Svc * @anyvm @anyvm allow\ntest.Svc * @anyvm @anyvm deny\n")
    now[0] += 0.5
    assert len(cache.get()) == 1
    now[0] += 0.6
    assert len(cache.get()) == 2
    cache.invalidate()
    assert len(cache.get()) == 2 and cache.loads == 3
