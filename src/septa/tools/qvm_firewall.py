"""qvm-firewall: list, add, remove or reset the firewall rules of a qube.

``qvm-firewall [--raw] [--reload] VMNAME [list]`` prints the rules (a numbered table, or
one Admin API line each with ``--raw``; ``--reload`` then applies them again);
``add [--before N] RULE...``, ``del --rule-no N`` / ``del RULE...`` and ``reset`` change
them. A rule is given as words ``key=value`` or as bare values in the order
action, dsthost, proto, dstports|icmptype (both forms can be mixed); ``expire=+S``
means S seconds from now. A malformed rule description is a usage error (exit 2); a
value the rule cannot hold, or a missing rule, is reported as ``Error: ...`` (exit 1).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from septa.client.app import Qubes
from septa.client.errors import QubesException, QubesValueError
from septa.client.firewall import Rule
from septa.client.vm import QubesVM

from .parser import QubesArgumentParser
from .runner import run
from .table import print_table

PROG = "qvm-firewall"
HEADER = ("NO", "ACTION", "HOST", "PROTOCOL", "PORT(S)", "SPECIAL TARGET", "ICMP TYPE",
          "EXPIRE", "COMMENT")
_POSITIONAL_ORDER = ("action", "dsthost", "proto", "dstports", "icmptype")
_KEYWORDS = frozenset(_POSITIONAL_ORDER) | {"specialtarget", "comment", "expire"}

EPILOG = """
A rule is given as bare values:
    <action> [<dsthost> [<proto> [<dstports>|<icmptype>]]]
or as key=value words:
    action=<action> [specialtarget=dns] [dsthost=<dsthost>]
    [proto=<proto>] [dstports=<dstports>] [icmptype=<icmptype>]
    [expire=<expire>] [comment=<text>]
and both forms can be mixed.

    action         accept or drop
    dsthost        an address, a network or a host name
                     (dst4 and dst6 are other names for it)
    proto          tcp, udp or icmp
    dstports       a port or a range (443, 1200-1400), tcp and udp only
    icmptype       an icmp type number, icmp only
    specialtarget  dns: the DNS servers the qube is given
    expire         seconds since the epoch, or +seconds from now,
                     when the rule is dropped
    comment        free text
"""


def _rule_words(words: Sequence[str]) -> dict[str, str]:
    """The key=value pairs of a rule description; bare words fill the next positional key."""
    order = list(_POSITIONAL_ORDER)
    values: dict[str, str] = {}
    for word in words:
        parts = word.split("=")
        if word.endswith("=") or len(parts) > 2 or (len(parts) == 1 and not order):
            raise argparse.ArgumentError(None, f"invalid rule description: {word}")
        key, value = parts if len(parts) == 2 else (order[0], word)
        if key in ("dst4", "dst6"):
            key = "dsthost"
        if key not in _KEYWORDS:
            raise argparse.ArgumentError(None, f"Invalid rule element: {word}")
        if key == "expire" and value.startswith("+"):
            if not value[1:].isdigit():
                raise argparse.ArgumentError(None, f"invalid rule description: {word}")
            value = str(int(time.time()) + int(value[1:]))
        values[key] = value
        if key in order:
            order.remove(key)
        if key == "proto":
            skipped = {"tcp": "icmptype", "udp": "icmptype", "icmp": "dstports"}.get(value)
            if skipped in order:
                order.remove(skipped)
    return values


class _RuleAction(argparse.Action):
    """Collects a rule description into a dict of values (checked later by the client)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, _rule_words(values) if values else None)


def _expire_text(expire: str) -> str:
    return f"{int(expire) - time.time():+.0f}s"


def _ports_text(ports: str) -> str:
    low, _, high = ports.partition("-")
    return low if not high or high == low else ports


def _row(number: int, rule: Rule) -> list[str]:
    cells = (rule.action, rule.host, rule.proto,
             _ports_text(rule.dstports) if rule.dstports else None,
             rule.specialtarget, rule.icmptype,
             _expire_text(rule.expire) if rule.expire else None, rule.comment)
    return [str(number)] + [cell if cell is not None else "-" for cell in cells]


def _list(vm: QubesVM, args: argparse.Namespace) -> None:
    rules = vm.firewall.get_rules()
    if args.raw:
        sys.stdout.write("".join(rule.to_wire() + "\n" for rule in rules))
    else:
        print_table([list(HEADER)] + [_row(n, rule) for n, rule in enumerate(rules)])
    if args.reload:
        vm.firewall.reload()


def _add(vm: QubesVM, args: argparse.Namespace) -> None:
    new = Rule.build(args.rule)
    rules = vm.firewall.get_rules()
    if args.before is None:
        rules.append(new)
    else:
        rules.insert(args.before, new)
    vm.firewall.set_rules(rules)


def _delete(vm: QubesVM, args: argparse.Namespace) -> None:
    rules = vm.firewall.get_rules()
    if args.rule_no is not None:
        if not -len(rules) <= args.rule_no < len(rules):
            raise QubesValueError("No rule number %s", str(args.rule_no))
        del rules[args.rule_no]
    elif args.rule is None:
        raise QubesValueError("Give the rule to remove, or --rule-no")
    else:
        wanted = Rule.build(args.rule).to_wire()
        lines = [rule.to_wire() for rule in rules]
        if wanted not in lines:
            raise QubesValueError("No such rule: %s", wanted)
        del rules[lines.index(wanted)]
    vm.firewall.set_rules(rules)


def _reset(vm: QubesVM, args: argparse.Namespace) -> None:
    vm.firewall.set_rules([Rule(action="accept")])


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-firewall."""
    parser = QubesArgumentParser(PROG, vmname_nargs=1, epilog=EPILOG,
                                 formatter_class=argparse.RawTextHelpFormatter,
                                 description="manage a qube's firewall rules")
    commands = parser.add_subparsers(dest="command", help="action to perform")
    add = commands.add_parser("add", help="add rule")
    add.add_argument("--before", type=int, default=None,
                     help="add the rule before the rule with this number, not at the end")
    add.add_argument("rule", metavar="match", nargs="+", action=_RuleAction,
                     help="rule description")
    add.set_defaults(func=_add)
    delete = commands.add_parser("del", help="remove rule")
    delete.add_argument("--rule-no", dest="rule_no", type=int, help="rule number")
    delete.add_argument("rule", metavar="match", nargs="*", action=_RuleAction,
                        help="rule to be removed")
    delete.set_defaults(func=_delete)
    commands.add_parser("list", help="list rules").set_defaults(func=_list)
    commands.add_parser(
        "reset", help="remove all firewall rules and reset to default (accept all connections)"
    ).set_defaults(func=_reset)
    parser.add_argument("--reload", "-r", action="store_true",
                        help="force reload of rules even when unchanged")
    parser.add_argument("--raw", action="store_true",
                        help="output rules as raw strings, instead of nice table")
    parser.set_defaults(func=_list)
    return parser


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        vm = parser.domains(Qubes(), args)[0]
        args.func(vm, args)
    except QubesException as e:
        parser.print_error(e)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-firewall."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
