"""``admin.vm.feature.*``, ``admin.vm.tag.*`` and ``admin.vm.notes.*``."""

from __future__ import annotations

import os

from septa.api.dispatch import Call, method
from septa.core.errors import QubesValueError
from septa.core.features import validate_feature_name, validate_tag

MAX_NOTES = 256000


@method("admin.vm.feature.List")
async def feature_list(call: Call) -> str:
    return "".join(f"{name}\n" for name in call.dest.features)


@method("admin.vm.feature.Get", wants_arg=True)
async def feature_get(call: Call) -> str:
    return call.dest.features[call.arg]


def _check_with(name: str, **chain: bool) -> None:
    @method(f"admin.vm.feature.{name}", wants_arg=True)
    async def check(call: Call) -> str:
        return call.dest.features.check_with(call.arg, **chain)


_check_with("CheckWithTemplate", template=True)
_check_with("CheckWithNetvm", netvm=True)
_check_with("CheckWithAdminVM", adminvm=True)
_check_with("CheckWithTemplateAndAdminVM", template=True, adminvm=True)


@method("admin.vm.feature.Set", wants_arg=True, wants_payload=True, writes=True)
async def feature_set(call: Call) -> str:
    validate_feature_name(call.arg)
    call.dest.features[call.arg] = call.text_payload()
    return ""


@method("admin.vm.feature.Remove", wants_arg=True, writes=True)
async def feature_remove(call: Call) -> str:
    del call.dest.features[call.arg]
    return ""


@method("admin.vm.tag.List")
async def tag_list(call: Call) -> str:
    return "".join(f"{tag}\n" for tag in call.dest.tags)


@method("admin.vm.tag.Get", wants_arg=True)
async def tag_get(call: Call) -> str:
    validate_tag(call.arg)
    return "1" if call.arg in call.dest.tags else "0"


@method("admin.vm.tag.Set", wants_arg=True, writes=True)
async def tag_set(call: Call) -> str:
    call.dest.tags.add(call.arg)
    return ""


@method("admin.vm.tag.Remove", wants_arg=True, writes=True)
async def tag_remove(call: Call) -> str:
    call.dest.tags.remove(call.arg)
    return ""


@method("admin.vm.notes.Get")
async def notes_get(call: Call) -> str:
    return call.dest.notes


@method("admin.vm.notes.Set", wants_payload=True, writes=True)
async def notes_set(call: Call) -> str:
    text = call.text_payload()
    if len(text) > MAX_NOTES:
        raise QubesValueError(f"Notes are longer than {MAX_NOTES} characters")
    if any(ord(c) < 0x20 and c not in "\t\n\r" for c in text):
        raise QubesValueError("Notes contain control characters")
    path = call.dest.dir_path / "notes.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".notes.txt.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    call.dest.notes = text
    return ""
