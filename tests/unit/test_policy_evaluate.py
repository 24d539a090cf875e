"""Policy evaluation: every token, first match, default deny and the execution-time checks."""

from __future__ import annotations

import pytest

from septa.qrexec.policy import (
    NO_MATCH,
    Allow,
    Ask,
    Decision,
    Deny,
    DomainInfo,
    Policy,
    Request,
    SystemInfo,
)

WORK_UUID = "11111111-2222-3333-4444-555555555555"
VAULT_UUID = "99999999-8888-7777-6666-555555555555"


def make_info() -> SystemInfo:
    """A small system used throughout the policy tests."""
    return SystemInfo(
        [
            DomainInfo("dom0", type="AdminVM", power_state="Running",
                       uuid="00000000-0000-0000-0000-000000000000", tags=frozenset({"admin"})),
            DomainInfo("work", tags=frozenset({"work"}), default_dispvm="dvm",
                       power_state="Running", uuid=WORK_UUID),
            DomainInfo("personal", tags=frozenset({"home"})),
            DomainInfo("vault", tags=frozenset({"secret"}), default_dispvm="nodvm",
                       uuid=VAULT_UUID),
            DomainInfo("dvm", template_for_dispvms=True, tags=frozenset({"dvmtag"})),
            DomainInfo("dvm2", template_for_dispvms=True, tags=frozenset({"other"})),
            DomainInfo("nodvm"),
            DomainInfo("fedora", type="TemplateVM"),
            DomainInfo("disp12", type="DispVM", template="dvm", power_state="Running"),
            DomainInfo("sys-net", type="StandaloneVM", tags=frozenset({"net"}),
                       power_state="Running"),
        ]
    )


INFO = make_info()


def decide(policy: str, source: str, target: str, call: str = "test.Svc+") -> Decision:
    return Policy.from_text(policy, "p.policy").evaluate(Request.parse(source, target, call), INFO)


def allowed(policy: str, source: str, target: str, call: str = "test.Svc+") -> str | None:
    """The target the call is allowed to, or None if it is not allowed."""
    decision = decide(policy, source, target, call)
    return decision.target if isinstance(decision, Allow) else None


# --- first match, default deny -------------------------------------------------------


def test_empty_policy_denies_with_no_matching_rule() -> None:
    decision = decide("", "work", "vault")
    assert decision == Deny(NO_MATCH)


def test_first_matching_rule_wins() -> None:
    policy = "test.Svc * work vault deny\ntest.Svc * work vault allow\n"
    decision = decide(policy, "work", "vault")
    assert isinstance(decision, Deny)
    assert decision.rule == "p.policy:1"
    assert decision.reason == "denied by policy p.policy:1"
    policy = "test.Svc * work vault allow\ntest.Svc * work vault deny\n"
    assert allowed(policy, "work", "vault") == "vault"


def test_non_matching_rules_are_skipped() -> None:
    policy = (
        "other.Svc * work vault allow\n"
        "test.Svc +x work vault allow\n"
        "test.Svc * personal vault allow\n"
        "test.Svc * work personal allow\n"
    )
    assert decide(policy, "work", "vault") == Deny(NO_MATCH)


def test_comments_and_blank_lines_are_ignored() -> None:
    policy = "# a comment\n\n   # indented\n\t\ntest.Svc * work vault allow\n"
    decision = decide(policy, "work", "vault")
    assert isinstance(decision, Allow) and decision.rule == "p.policy:5"


# --- service and argument columns ----------------------------------------------------


@pytest.mark.parametrize(
    ("column", "call", "matches"),
    [
        ("test.Svc *", "test.Svc", True),
        ("test.Svc *", "test.Svc+anything", True),
        ("test.Svc +", "test.Svc", True),
        ("test.Svc +", "test.Svc+", True),
        ("test.Svc +", "test.Svc+a", False),
        ("test.Svc +a", "test.Svc+a", True),
        ("test.Svc +a", "test.Svc+ab", False),
        ("test.Svc +a+b", "test.Svc+a+b", True),
        ("* *", "any.Service+arg", True),
        ("test.Svc *", "test.Svc2", False),
        ("test.svc *", "test.Svc", False),
    ],
)
def test_service_and_argument_columns(column: str, call: str, matches: bool) -> None:
    result = allowed(f"{column} work vault allow", "work", "vault", call)
    assert (result == "vault") is matches


def test_wildcard_service_rules_keep_their_place() -> None:
    policy = "a.One * work vault allow\n* * work vault deny\na.Two * work vault allow\n"
    assert allowed(policy, "work", "vault", "a.One") == "vault"
    assert allowed(policy, "work", "vault", "a.Two") is None
    assert allowed(policy, "work", "vault", "a.Three") is None


def test_rules_for_lists_the_rules_of_a_service_in_order() -> None:
    policy = Policy.from_text(
        "a.One * work vault allow\n* * work vault deny\na.Two * @anyvm @anyvm deny"
    )
    assert [r.lineno for r in policy.rules_for("a.Two")] == [2, 3]
    assert [r.lineno for r in policy.rules_for("unknown.Svc")] == [2]
    assert len(policy) == 3


def test_many_arguments_of_one_service() -> None:
    policy = "\n".join(f"test.Svc +arg{i} work vault {'allow' if i % 2 else 'deny'}"
                       for i in range(200))
    compiled = Policy.from_text(policy)
    for i in (0, 1, 57, 198, 199):
        decision = compiled.evaluate(Request("work", "vault", "test.Svc", f"arg{i}"), INFO)
        assert isinstance(decision, Allow if i % 2 else Deny)
        assert decision.rule == f"<string>:{i + 1}"
    assert compiled.evaluate(Request("work", "vault", "test.Svc", "argX"), INFO) == Deny(NO_MATCH)


# --- source tokens -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "source", "matches"),
    [
        ("work", "work", True),
        ("work", "personal", False),
        (f"uuid:{WORK_UUID}", "work", True),
        (f"uuid:{WORK_UUID.upper()}", "work", True),
        (f"uuid:{VAULT_UUID}", "work", False),
        ("@anyvm", "work", True),
        ("@anyvm", "dom0", False),
        ("*", "dom0", True),
        ("*", "work", True),
        ("@adminvm", "dom0", True),
        ("@adminvm", "work", False),
        ("dom0", "dom0", True),
        ("dom0", "work", False),
        ("@tag:work", "work", True),
        ("@tag:work", "personal", False),
        ("@type:AppVM", "work", True),
        ("@type:AppVM", "fedora", False),
        ("@type:TemplateVM", "fedora", True),
        ("@type:StandaloneVM", "sys-net", True),
        ("@type:DispVM", "disp12", True),
        ("@dispvm:dvm", "disp12", True),
        ("@dispvm:dvm2", "disp12", False),
        ("@dispvm:dvm", "dvm", False),
        ("@dispvm:@tag:dvmtag", "disp12", True),
        ("@dispvm:@tag:other", "disp12", False),
    ],
)
def test_source_tokens(token: str, source: str, matches: bool) -> None:
    assert (allowed(f"test.Svc * {token} vault allow", source, "vault") == "vault") is matches


def test_unknown_source_is_denied() -> None:
    decision = decide("test.Svc * @anyvm @anyvm allow\ntest.Svc * * * allow", "ghost", "vault")
    assert isinstance(decision, Deny) and "ghost" in decision.reason and decision.rule is None


def test_source_given_by_uuid() -> None:
    assert allowed("test.Svc * work vault allow", f"uuid:{WORK_UUID}", "vault") == "vault"


# --- target tokens -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "target", "matches"),
    [
        ("vault", "vault", True),
        ("vault", "personal", False),
        (f"uuid:{VAULT_UUID}", "vault", True),
        ("vault", f"uuid:{VAULT_UUID}", True),
        ("@anyvm", "vault", True),
        ("@anyvm", "dom0", False),
        ("@anyvm", "@adminvm", False),
        ("*", "dom0", True),
        ("@adminvm", "dom0", True),
        ("@adminvm", "@adminvm", True),
        ("@adminvm", "uuid:00000000-0000-0000-0000-000000000000", True),
        ("dom0", "@adminvm", True),
        ("dom0", "vault", False),
        ("@tag:secret", "vault", True),
        ("@tag:secret", "personal", False),
        ("@tag:admin", "dom0", False),
        ("@type:AppVM", "vault", True),
        ("@type:AdminVM", "dom0", False),
        ("@type:TemplateVM", "fedora", True),
        ("@type:TemplateVM", "vault", False),
    ],
)
def test_target_tokens(token: str, target: str, matches: bool) -> None:
    result = allowed(f"test.Svc * work {token} allow", "work", target)
    assert (result is not None) is matches


def test_dom0_as_target_only_when_named() -> None:
    for token in ("@anyvm", "@tag:admin", "@type:AdminVM"):
        assert decide(f"test.Svc * @anyvm {token} allow", "work", "dom0") == Deny(NO_MATCH)
    assert allowed("test.Svc * @anyvm @adminvm allow", "work", "dom0") == "dom0"
    assert allowed("test.Svc * @anyvm dom0 allow", "work", "@adminvm") == "dom0"


def test_default_target_token() -> None:
    policy = "test.Svc * @anyvm @default allow target=vault\n"
    assert allowed(policy, "work", "@default") == "vault"
    assert allowed(policy, "work", "") == "vault"
    assert decide(policy, "work", "personal") == Deny(NO_MATCH)


def test_anyvm_target_also_matches_default_but_allow_needs_a_target() -> None:
    decision = decide("test.Svc * @anyvm @anyvm allow", "work", "@default")
    assert isinstance(decision, Deny)
    assert "no target is specified" in decision.reason and decision.notify is True
    assert decision.rule == "p.policy:1"


def test_dispvm_target_resolves_to_default_dispvm() -> None:
    policy = "test.Svc * @anyvm @dispvm allow\n"
    decision = decide(policy, "work", "@dispvm")
    assert isinstance(decision, Allow)
    assert decision.target == "@dispvm:dvm" and decision.requested_target == "@dispvm"


def test_dispvm_without_default_dispvm_is_denied() -> None:
    decision = decide("test.Svc * @anyvm @dispvm allow", "personal", "@dispvm")
    assert isinstance(decision, Deny) and "default_dispvm" in decision.reason
    # vault's default_dispvm is not a template for disposables
    decision = decide("test.Svc * @anyvm @dispvm allow", "vault", "@dispvm")
    assert isinstance(decision, Deny) and "default_dispvm" in decision.reason


def test_dispvm_name_target() -> None:
    policy = "test.Svc * @anyvm @dispvm:dvm2 allow\n"
    assert allowed(policy, "work", "@dispvm:dvm2") == "@dispvm:dvm2"
    assert decide(policy, "work", "@dispvm:dvm") == Deny(NO_MATCH)
    # a plain @dispvm matches @dispvm:NAME when NAME is the caller's default_dispvm
    assert allowed("test.Svc * @anyvm @dispvm:dvm allow", "work", "@dispvm") == "@dispvm:dvm"
    assert decide("test.Svc * @anyvm @dispvm:dvm2 allow", "work", "@dispvm") == Deny(NO_MATCH)


def test_dispvm_name_needs_template_for_dispvms() -> None:
    for target in ("@dispvm:nodvm", "@dispvm:ghost", "@dispvm:"):
        decision = decide("test.Svc * @anyvm * allow", "work", target)
        assert isinstance(decision, Deny) and decision.rule is None


def test_dispvm_tag_target() -> None:
    policy = "test.Svc * @anyvm @dispvm:@tag:dvmtag allow\n"
    assert allowed(policy, "work", "@dispvm:dvm") == "@dispvm:dvm"
    assert allowed(policy, "work", "@dispvm") == "@dispvm:dvm"
    assert decide(policy, "work", "@dispvm:dvm2") == Deny(NO_MATCH)
    assert decide(policy, "work", "dvm") == Deny(NO_MATCH)


def test_dispvm_token_does_not_match_named_dispvm() -> None:
    assert decide("test.Svc * @anyvm @dispvm allow", "work", "@dispvm:dvm") == Deny(NO_MATCH)


def test_anyvm_target_matches_dispvm_requests() -> None:
    assert allowed("test.Svc * @anyvm @anyvm allow", "work", "@dispvm") == "@dispvm:dvm"
    assert allowed("test.Svc * @anyvm @anyvm allow", "work", "@dispvm:dvm2") == "@dispvm:dvm2"


@pytest.mark.parametrize("target", ["ghost", "uuid:12345678-1234-1234-1234-123456789012",
                                    "@anyvm", "@tag:work", "@type:AppVM", "@bogus"])
def test_invalid_or_missing_target_is_denied(target: str) -> None:
    decision = decide("test.Svc * * * allow", "work", target)
    assert isinstance(decision, Deny) and decision.rule is None


# --- allow parameters ----------------------------------------------------------------


def test_allow_redirect_user_and_flags() -> None:
    decision = decide("test.Svc * work @anyvm allow target=vault user=root notify=yes", "work",
                      "personal")
    assert decision == Allow(target="vault", user="root", autostart=True, notify=True,
                             requested_target="personal", rule="p.policy:1")


def test_allow_redirect_to_dispvm_and_dom0() -> None:
    assert allowed("test.Svc * work @anyvm allow target=@dispvm", "work", "vault") == "@dispvm:dvm"
    assert allowed("test.Svc * work @anyvm allow target=@dispvm:dvm2", "work", "vault") == (
        "@dispvm:dvm2"
    )
    assert allowed("test.Svc * work @anyvm allow target=@adminvm", "work", "vault") == "dom0"
    assert allowed("test.Svc * work @anyvm allow target=dom0", "work", "vault") == "dom0"
    assert allowed(f"test.Svc * work @anyvm allow target=uuid:{VAULT_UUID}", "work",
                   "personal") == "vault"


def test_allow_redirect_to_missing_qube_is_denied() -> None:
    for redirect in ("ghost", "@dispvm:nodvm"):
        decision = decide(f"test.Svc * work @anyvm allow target={redirect}", "work", "vault")
        assert isinstance(decision, Deny) and decision.rule == "p.policy:1"


def test_qube_calling_itself_is_denied() -> None:
    decision = decide("test.Svc * @anyvm @anyvm allow", "work", "work")
    assert isinstance(decision, Deny) and "itself" in decision.reason
    decision = decide("test.Svc * @anyvm @anyvm allow target=work", "work", "vault")
    assert isinstance(decision, Deny) and "itself" in decision.reason
    decision = decide("test.Svc * * * allow", "dom0", "dom0")
    assert isinstance(decision, Deny) and "itself" in decision.reason
    # redirected elsewhere, a call naming the caller itself is fine
    assert allowed("test.Svc * work work allow target=vault", "work", "work") == "vault"


def test_autostart_no_needs_a_running_target() -> None:
    policy = (
        "test.Svc * @anyvm @anyvm allow autostart=no\n"
        "test.Svc * @anyvm @adminvm allow autostart=no"
    )
    assert allowed(policy, "personal", "work") == "work"
    assert allowed(policy, "work", "sys-net") == "sys-net"
    assert allowed(policy, "work", "dom0") == "dom0"
    for target in ("vault", "@dispvm"):
        decision = decide(policy, "work", target)
        assert isinstance(decision, Deny) and "autostart=no" in decision.reason
        assert decision.notify is False  # as the rule says (notify=no by default for allow)
    decision = decide(policy, "personal", "work")
    assert isinstance(decision, Allow) and decision.autostart is False


def test_deny_notify() -> None:
    decision = decide("test.Svc * @anyvm @anyvm deny", "work", "vault")
    assert isinstance(decision, Deny) and decision.notify is True
    decision = decide("test.Svc * @anyvm @anyvm deny notify=no", "work", "vault")
    assert isinstance(decision, Deny) and decision.notify is False
    assert decide("", "work", "vault").notify is True


# --- ask -----------------------------------------------------------------------------


def ask(policy: str, source: str, target: str, call: str = "test.Svc+") -> Ask:
    decision = decide(policy, source, target, call)
    assert isinstance(decision, Ask), decision
    return decision


def test_ask_offers_the_targets_the_policy_allows() -> None:
    policy = (
        "test.Svc * work vault deny\n"
        "test.Svc * @anyvm @default ask\n"
        "test.Svc * @anyvm @tag:secret ask\n"
        "test.Svc * @anyvm @tag:home allow\n"
        "test.Svc * @anyvm @anyvm deny\n"
    )
    decision = ask(policy, "work", "@default")
    assert decision.targets == ("personal",)
    assert decision.requested_target == "@default"
    assert decision.default_target is None
    assert decision.rule == "p.policy:2"


def test_ask_with_anyvm_lists_every_qube_but_dom0_and_the_caller() -> None:
    decision = ask("test.Svc * @anyvm @anyvm ask", "work", "@default")
    assert decision.targets == (
        "@dispvm:dvm", "@dispvm:dvm2", "disp12", "dvm", "dvm2", "fedora", "nodvm", "personal",
        "sys-net", "vault",
    )


def test_ask_earlier_deny_removes_later_allowed_targets() -> None:
    policy = (
        "test.Svc * @anyvm @default ask\n"
        "test.Svc * work @tag:secret deny\n"
        "test.Svc * work @type:TemplateVM deny\n"
        "test.Svc * work @dispvm:@tag:other deny\n"
        "test.Svc * @anyvm @anyvm ask\n"
    )
    decision = ask(policy, "work", "")
    assert "vault" not in decision.targets and "fedora" not in decision.targets
    assert "@dispvm:dvm2" not in decision.targets and "@dispvm:dvm" in decision.targets
    assert "personal" in decision.targets


def test_ask_later_deny_does_not_remove_earlier_targets() -> None:
    policy = "test.Svc * @anyvm vault ask\ntest.Svc * @anyvm @anyvm deny\n"
    assert ask(policy, "work", "vault").targets == ("vault",)


def test_ask_targets_only_from_rules_of_this_source_and_call() -> None:
    policy = (
        "test.Svc * @anyvm @default ask\n"
        "test.Svc * personal vault allow\n"
        "test.Svc +other work sys-net allow\n"
        "other.Svc * work fedora allow\n"
        "test.Svc * work dvm2 allow\n"
        "test.Svc * @tag:work @adminvm ask\n"
        "test.Svc * work @dispvm allow\n"
    )
    assert ask(policy, "work", "@default").targets == ("@dispvm:dvm", "dom0", "dvm2")


def test_ask_default_target() -> None:
    policy = "test.Svc * @anyvm @default ask default_target=vault\ntest.Svc * @anyvm vault allow\n"
    assert ask(policy, "work", "@default").default_target == "vault"
    policy = "test.Svc * @anyvm @default ask default_target=personal\ntest.Svc * @anyvm vault allow"
    assert ask(policy, "work", "@default").default_target is None
    policy = (
        "test.Svc * @anyvm @default ask default_target=@dispvm\n"
        "test.Svc * @anyvm @dispvm allow"
    )
    decision = ask(policy, "work", "@default")
    assert decision.targets == ("@dispvm:dvm",) and decision.default_target == "@dispvm:dvm"
    policy = "test.Svc * @anyvm @default ask default_target=@adminvm\ntest.Svc * @anyvm dom0 allow"
    assert ask(policy, "work", "@default").default_target == "dom0"


def test_ask_with_target_offers_only_that_target() -> None:
    policy = "test.Svc * @anyvm @anyvm ask target=vault user=user\n"
    decision = ask(policy, "work", "personal")
    assert decision.targets == ("vault",) and decision.user == "user"
    assert ask("test.Svc * @anyvm @anyvm ask target=@dispvm", "work", "vault").targets == (
        "@dispvm:dvm",
    )
    assert ask("test.Svc * @anyvm @anyvm ask target=@adminvm", "work", "vault").targets == (
        "dom0",
    )


def test_ask_without_any_target_is_denied() -> None:
    for policy in (
        "test.Svc * @anyvm @anyvm ask target=ghost",
        "test.Svc * @anyvm @anyvm ask target=@dispvm",  # personal has no default_dispvm
        "test.Svc * @anyvm @default ask",
        "test.Svc * @anyvm @anyvm ask target=personal",  # the caller itself
    ):
        decision = decide(policy, "personal", "@default")
        assert isinstance(decision, Deny), policy
        assert "no target is available" in decision.reason and decision.rule == "p.policy:1"


def test_ask_autostart_no_offers_only_running_targets() -> None:
    decision = ask("test.Svc * @anyvm @anyvm ask autostart=no\n"
                   "test.Svc * @anyvm @adminvm allow", "personal", "@default")
    assert decision.targets == ("disp12", "dom0", "sys-net", "work")
    assert decision.autostart is False


def test_ask_answer() -> None:
    decision = ask("test.Svc * @anyvm @anyvm ask user=u notify=yes", "work", "@default")
    assert decision.answer("vault") == Allow(
        target="vault", user="u", autostart=True, notify=True, requested_target="@default",
        rule="p.policy:1",
    )
    assert isinstance(decision.answer("dom0"), Deny)
    refused = decision.answer(None)
    assert isinstance(refused, Deny) and "denied by the user" in refused.reason


# --- decision output -----------------------------------------------------------------


def test_decision_lines() -> None:
    assert Allow("vault", rule="f:1", requested_target="@default").lines() == [
        "result=allow", "target=vault", "user=", "autostart=True", "notify=False",
        "requested_target=@default", "rule=f:1",
    ]
    assert Deny("no matching rule").lines() == [
        "result=deny", "reason=no matching rule", "rule=",
    ]
    assert Ask(("a", "b"), "b", "@default").lines()[:4] == [
        "result=ask", "target=@default", "targets=a b", "default_target=b",
    ]


def test_find_rule() -> None:
    policy = Policy.from_text("test.Svc * work vault deny\ntest.Svc * @anyvm @anyvm allow")
    rule = policy.find_rule(Request.parse("personal", "vault", "test.Svc"), INFO)
    assert rule is not None and rule.lineno == 2
    assert policy.find_rule(Request.parse("ghost", "vault", "test.Svc"), INFO) is None
