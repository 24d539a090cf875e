"""The layer bookkeeping of the ``file`` driver: which image files make up a volume.

An origin volume's data is a set of *layers* (image files named ``<id>.img`` in the
volume's state directory), each raw or qcow2, each qcow2 layer backed by another layer.
One layer is *current*; each revision names the layer that was current before. A layer
that is neither current nor a revision is *hidden* and is collapsed away when nothing
else holds it. The bookkeeping lives in ``meta.json``, written atomically after each step,
so that it always describes files that exist and chains that read right.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, cast

from septa.storage.model import DiskFormat

META_VERSION = 1


@dataclass
class Layer:
    """One image file of a volume."""

    format: DiskFormat
    backing: str | None
    #: When the data of this layer became the volume's current data (seconds since epoch).
    committed: float


@dataclass
class Revision:
    id: str
    layer: str
    timestamp: str


@dataclass
class Meta:
    size: int
    current: str
    layers: dict[str, Layer]
    revisions: list[Revision] = field(default_factory=list)
    counter: int = 0

    def new_id(self) -> str:
        self.counter += 1
        return str(self.counter)

    def chain(self, layer_id: str) -> list[str]:
        """``layer_id`` and the layers below it, nearest first."""
        result: list[str] = []
        current: str | None = layer_id
        while current is not None:
            if current in result or current not in self.layers:
                raise ValueError(f"broken layer chain at {current!r}")
            result.append(current)
            current = self.layers[current].backing
        return result

    def children(self, layer_id: str) -> list[str]:
        return sorted(lid for lid, layer in self.layers.items() if layer.backing == layer_id)

    def referenced(self) -> set[str]:
        """Layers that hold data somebody may ask for: the current one and revisions."""
        return {self.current} | {revision.layer for revision in self.revisions}

    def to_json(self) -> dict[str, Any]:
        return {"version": META_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Meta:
        if data.get("version") != META_VERSION:
            raise ValueError(f"unknown metadata version {data.get('version')!r}")
        layers = {str(k): Layer(format=cast(DiskFormat, v["format"]), backing=v["backing"],
                                committed=float(v["committed"]))
                  for k, v in data["layers"].items()}
        revisions = [Revision(id=str(r["id"]), layer=str(r["layer"]),
                              timestamp=str(r["timestamp"])) for r in data["revisions"]]
        meta = cls(size=int(data["size"]), current=str(data["current"]), layers=layers,
                   revisions=revisions, counter=int(data["counter"]))
        for lid in meta.referenced():
            meta.chain(lid)
        return meta
