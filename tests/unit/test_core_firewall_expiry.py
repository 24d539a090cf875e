"""split_expired: dom0 drops the rules whose expire time has passed and says when the next goes."""

from __future__ import annotations

from septa.core.firewall import parse_rule, split_expired


def test_expired_rules_are_dropped_and_the_next_expiry_named() -> None:
    rules = [parse_rule(line) for line in (
        "action=accept proto=tcp dstports=22 expire=1000",
        "action=accept dsthost=example.com expire=3000",
        "action=accept specialtarget=dns",
        "action=drop expire=2000",
    )]
    live, next_expiry = split_expired(rules, 1500)
    assert live == [rules[1], rules[2], rules[3]]
    assert next_expiry == 2000


def test_a_rule_is_gone_at_its_expire_time() -> None:
    rules = [parse_rule("action=accept expire=2000"), parse_rule("action=drop")]
    assert split_expired(rules, 1999.5) == (rules, 2000)
    assert split_expired(rules, 2000) == ([rules[1]], None)


def test_no_expiring_rules() -> None:
    rules = [parse_rule("action=accept")]
    assert split_expired(rules, 0) == (rules, None)
    assert split_expired([], 0) == ([], None)
