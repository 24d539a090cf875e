"""The filtering options of qvm-ls (``--class``, ``--label``, ``--tags``, ``--running`` ...)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from septa.client.vm import QubesVM

from .ls_columns import prop_text, prop_value
from .parser import QubesArgumentParser
from .spinner import Spinner

#: Power states that have their own filter option.
POWER_FILTERS = ("running", "paused", "halted")
_TRUE_FEATURE = ("1", "true", "True")


def _reference_key(vm: QubesVM, prop: str) -> str | None:
    """What a template/netvm filter compares: the name, None if empty, '' if no such property."""
    value = prop_value(vm, prop)
    if value is None:
        return ""
    return None if value.is_none else value.text


def _pref_display(vm: QubesVM, prop: str) -> str:
    value = prop_value(vm, prop)
    if value is None or not value.has_value:
        return "None"
    return value.display()


def _split_assignment(
    parser: QubesArgumentParser, option: str, text: str
) -> tuple[str, str | None]:
    """``KEY=VALUE`` of --features/--prefs: empty VALUE means None, '' or \"\" an empty string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        parser.error(f"Invalid argument: {option} {text}")
    if value == "":
        return key, None
    if value in ("''", '""'):
        return key, ""
    return key, value


def _with_spinner(
    domains: list[QubesVM], spinner: Spinner, prompt: str, keep: Callable[[QubesVM], bool]
) -> list[QubesVM]:
    spinner.show(prompt)
    result = []
    for vm in domains:
        if keep(vm):
            result.append(vm)
        spinner.update()
    spinner.hide()
    return result


def _feature_flag(vm: QubesVM, feature: str) -> bool:
    return vm.features.get(feature) in _TRUE_FEATURE


def _yes_no_filter(domains: list[QubesVM], choice: str, feature: str) -> list[QubesVM]:
    if choice in ("y", "yes"):
        return [vm for vm in domains if _feature_flag(vm, feature)]
    if choice in ("n", "no"):
        return [vm for vm in domains if not _feature_flag(vm, feature)]
    return domains


def apply_filters(
    domains: list[QubesVM],
    args: argparse.Namespace,
    parser: QubesArgumentParser,
    spinner: Spinner,
) -> list[QubesVM]:
    """The qubes that pass every filtering option given."""
    if args.klass:
        domains = [vm for vm in domains if vm.klass in args.klass]
    if args.label:
        domains = _with_spinner(
            domains,
            spinner,
            "Filtering by label...",
            lambda vm: prop_text(vm, "label") in args.label,
        )
    if args.tags:
        wanted = set(args.tags)
        domains = [vm for vm in domains if wanted & set(vm.tags)]
    if args.exclude_tags:
        unwanted = set(args.exclude_tags)
        domains = [vm for vm in domains if not unwanted & set(vm.tags)]
    if args.template_source:
        domains = _with_spinner(
            domains,
            spinner,
            "Filtering by template...",
            lambda vm: _reference_key(vm, "template") in args.template_source,
        )
    if args.netvm_is:
        domains = _with_spinner(
            domains,
            spinner,
            "Filtering by netvm...",
            lambda vm: _reference_key(vm, "netvm") in args.netvm_is,
        )
    domains = _yes_no_filter(domains, args.internal, "internal")
    domains = _yes_no_filter(domains, args.servicevm, "servicevm")
    if args.pending_update:
        domains = [vm for vm in domains if vm.features.get("updates-available")]
    for text in args.features or ():
        key, value = _split_assignment(parser, "--features", text)
        domains = [vm for vm in domains if vm.features.get(key) == value]
    for text in args.prefs or ():
        key, pref = _split_assignment(parser, "--prefs", text)
        expected = "None" if pref is None else pref
        domains = [vm for vm in domains if _pref_display(vm, key) == expected]
    states = [state for state in POWER_FILTERS if getattr(args, state)]
    if states:
        domains = [vm for vm in domains if vm.get_power_state().lower() in states]
    return domains
