"""Disposable qubes: a new one for each use, made on demand or taken ready-booted from the
ones preloaded for its disposable template.

A disposable is a ``DispVM`` named ``disp<dispid>`` with its template's label and
``auto_cleanup``: it is removed, volumes and all, as soon as it stops.

Preloading follows Qubes 4.3's features: ``preload-dispvm-max`` on a disposable template
(on dom0 for the system's ``default_dispvm``, where it takes precedence) is how many
disposables to keep booted and paused for it; the template's ``preload-dispvm`` feature
lists them, oldest first; a preloaded qube has the ``internal`` feature until it is
taken. A qube enters the list only once it has booted, so taking one never waits for a
boot; when the list is empty a new disposable is made (cold). Each take refills the
list in the background; lowering the maximum removes the extra ones; a preloaded qube
that failed to boot is removed and not retried until the next take or change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from typing import TYPE_CHECKING, Any

from septa.core.creation import create_qube
from septa.core.errors import QubesException
from septa.core.firewall import FIREWALL_FILE
from septa.core.vm import AdminVM, BaseVM

if TYPE_CHECKING:
    from septa.core.lifecycle import Runtime

log = logging.getLogger(__name__)
PRELOAD_MAX = "preload-dispvm-max"
PRELOAD_LIST = "preload-dispvm"
READY_STATES = ("Running", "Paused")


def disposable_template(source: BaseVM | None, base: BaseVM) -> BaseVM:
    """The disposable template for a new disposable asked of ``base``: ``base`` itself
    when it is one, otherwise ``source``'s (or ``base``'s) ``default_dispvm``."""
    if not isinstance(base, AdminVM) and base.get_or("template_for_dispvms", False):
        return base
    owner = source if source is not None else base
    template: BaseVM | None = owner.get_or("default_dispvm", None)
    if template is None:
        raise QubesException(f"No default disposable template for {owner.name}")
    if not template.get_or("template_for_dispvms", False):
        raise QubesException(f"{template.name} is not a disposable template "
                             f"(template_for_dispvms is False)")
    return template


def inherit(vm: BaseVM, template: BaseVM) -> None:
    """A new disposable takes what its template set (as in Qubes): the explicit values of
    the properties it has too (its netvm above all: no unintended network path), the
    features but the preload list, the tags and the firewall rules."""
    for name in template.explicit_values():
        prop = vm.property_defs.get(name)
        if prop is None or not prop.clone or prop.read_only or prop.write_once \
                or name == "template" or not vm.property_is_default(name):
            continue
        vm.set(name, template.get(name))
    for feature in template.features:
        if not feature.startswith("preload-dispvm"):
            vm.features[feature] = template.features[feature]
    for tag in template.tags:
        vm.tags.add(tag)
    rules = template.dir_path / FIREWALL_FILE
    if rules.exists():
        vm.dir_path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(rules, vm.dir_path / FIREWALL_FILE)


class Disposables:
    """New disposables, and the preloaded ones, of one registry and its runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.app = runtime.app
        self._refills: dict[str, asyncio.Task[None]] = {}

    # ----- the features -------------------------------------------------------------

    def preload_max(self, template: BaseVM) -> int:
        """How many disposables of ``template`` to keep preloaded."""
        value = None
        adminvm = self._get("dom0")
        if adminvm is not None and adminvm.get_or("default_dispvm", None) is template:
            value = adminvm.features.get(PRELOAD_MAX)
        if value is None:
            value = template.features.get(PRELOAD_MAX)
        try:
            return max(0, int(value or 0))
        except ValueError:
            return 0

    def preloaded(self, template: BaseVM) -> list[str]:
        return (template.features.get(PRELOAD_LIST) or "").split()

    def _set_preloaded(self, template: BaseVM, names: list[str]) -> None:
        if names:
            template.features[PRELOAD_LIST] = " ".join(names)
        elif PRELOAD_LIST in template.features:
            del template.features[PRELOAD_LIST]
        self._save()

    def _get(self, name: str) -> BaseVM | None:
        return self.app.domains[name] if name in self.app.domains else None

    def _save(self) -> None:
        if self.runtime.save is not None:
            self.runtime.save(self.app)

    # ----- taking one ---------------------------------------------------------------

    async def new(self, template: BaseVM, created_by: str) -> BaseVM:
        """A disposable of ``template`` for ``created_by``: a preloaded one (running)
        when there is one, otherwise a new one (halted)."""
        names = self.preloaded(template)
        while names:
            name = names.pop(0)
            self._set_preloaded(template, names)
            vm = self._get(name)
            if vm is None or self.runtime.power_state(vm) not in READY_STATES:
                continue
            with contextlib.suppress(KeyError):
                del vm.features["internal"]
            vm.tags.add(f"created-by-{created_by}")
            if self.runtime.power_state(vm) == "Paused":
                await self.runtime.unpause(vm)
            self._save()
            self.schedule_refill(template)
            log.info("took preloaded disposable %s of %s for %s", name, template.name,
                     created_by)
            return vm
        vm = await self._create(template, created_by)
        self.schedule_refill(template)
        return vm

    async def _create(self, template: BaseVM, created_by: str) -> BaseVM:
        dispid = self.app.domains.free_dispid()
        vm = await create_qube(self.app, "DispVM", f"disp{dispid}", template.get("label"),
                               template, created_by=created_by,
                               properties={"auto_cleanup": "True", "dispid": str(dispid)})
        inherit(vm, template)
        self._save()
        return vm

    # ----- preloading ---------------------------------------------------------------

    def schedule_refill(self, template: BaseVM) -> None:
        """Bring ``template``'s preloaded disposables to its maximum, in the background."""
        task = self._refills.get(template.name)
        if task is not None and not task.done():
            return
        task = asyncio.get_running_loop().create_task(self._refill(template))
        self._refills[template.name] = task

    def _prune(self, template: BaseVM) -> None:
        """Drop listed qubes that stopped (a qube is listed only once booted)."""
        names = self.preloaded(template)
        alive = [name for name in names if (vm := self._get(name)) is not None
                 and self.runtime.power_state(vm) in READY_STATES]
        if alive != names:
            self._set_preloaded(template, alive)

    async def _refill(self, template: BaseVM) -> None:
        try:
            self._prune(template)
            while template.name in self.app.domains \
                    and len(self.preloaded(template)) < self.preload_max(template):
                if not await self._preload_one(template):
                    break
            names = self.preloaded(template)
            extra = names[self.preload_max(template):]
            if extra:
                self._set_preloaded(template, names[:len(names) - len(extra)])
                for name in extra:
                    await self._discard(name)
        except QubesException as exc:
            log.error("preloading disposables of %s: %s", template.name, exc)

    async def _preload_one(self, template: BaseVM) -> bool:
        vm = await self._create(template, "dom0")
        vm.features["internal"] = "1"
        try:
            await self.runtime.start(vm)
            await self.runtime.pause(vm)
        except QubesException as exc:
            log.error("preloading %s (of %s) failed: %s", vm.name, template.name, exc)
            await self._discard(vm.name)
            return False
        self._set_preloaded(template, [*self.preloaded(template), vm.name])
        log.info("preloaded disposable %s of %s", vm.name, template.name)
        return True

    async def _discard(self, name: str) -> None:
        """Remove a disposable that is not used (it stops, then is removed)."""
        vm = self._get(name)
        if vm is None:
            return
        try:
            if self.runtime.power_state(vm) != "Halted":
                await self.runtime.kill(vm)
            else:
                await self.runtime.remove_disposable(vm)
        except QubesException as exc:
            log.error("removing the unused disposable %s failed: %s", name, exc)

    # ----- keeping in step with the registry ----------------------------------------

    def on_event(self, subject: Any, event: str, kwargs: dict[str, Any]) -> None:
        """A global listener: a changed ``preload-dispvm-max`` refills or trims; a
        preloaded qube that stops (killed, crashed) is replaced."""
        if event == "domain-shutdown" and isinstance(subject, BaseVM):
            template = subject.template_or_none()
            if template is not None and subject.name in self.preloaded(template):
                self.schedule_refill(template)
            return
        if event.split(":", 1)[-1] != PRELOAD_MAX or not event.startswith("domain-feature-"):
            return
        if event.startswith(("domain-feature-pre-",)):
            return
        template = subject.get_or("default_dispvm", None) if isinstance(subject, AdminVM) \
            else subject
        if template is not None:
            self.schedule_refill(template)

    async def recover(self) -> None:
        """After a daemon start: drop listed qubes that are not booted, then refill."""
        for template in list(self.app.domains):
            names = self.preloaded(template)
            alive = [name for name in names if name in self.app.domains
                     and self.runtime.power_state(self.app.domains[name]) in READY_STATES]
            if alive != names:
                self._set_preloaded(template, alive)
                for name in set(names) - set(alive):
                    await self._discard(name)
            if self.preload_max(template) or alive:
                self.schedule_refill(template)

    async def close(self) -> None:
        """Stop preloading (the qubes already preloaded stay)."""
        for task in self._refills.values():
            task.cancel()
        await asyncio.gather(*self._refills.values(), return_exceptions=True)
        self._refills.clear()
