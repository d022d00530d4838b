"""What a migration is planned from: the one list of planning options, defaults defined here.

:class:`PlanInputs` is built by every caller — the CLI (from its options,
config files and ``CKPTMAP_*`` variables), the library functions
(:func:`~ckptmap.migration.plan.plan_remap`, ``check``, ``remap``) and the TF
adapter — so a default cannot drift between them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckptmap.defaults import CANDIDATE_CUTOFF
from ckptmap.errors import AliasError, MissingInputError, UsageError
from ckptmap.migration.transforms import parse_entry, transposes_of
from ckptmap.naming import Rule, parse_rule

if TYPE_CHECKING:
    from ckptmap.spec import ModelSpec

# A JSON alias map is a flat object; anything deeper or larger is not one.
MAX_ALIAS_MAP_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class PlanInputs:
    """Everything a remap plan (and so a check) is decided from.

    Attributes:
        old: the old checkpoint: a model folder, a prefix, an ``.index`` file, a
            URL, a zarr3 store written by ``ckptmap convert``, or an open source.
        new_graph: the new model: graph.pbtxt, .pb, .meta, a SavedModel folder, a
            JSON spec, a checkpoint of the new model, or a :class:`ModelSpec`.
        step: with a model folder, the checkpoint of this global step (else the latest).
        alias_map: an explicit ``{new name: old key}`` map, or a JSON file of one;
            applied before the rules.
        rules: ``PATTERN=FORMAT`` rules (text or parsed), applied in order after
            the alias map.
        auto: generate the remaining aliases with Monolith's heuristics.
        clear_nn: drop the dense (NN) variables; the new model initializes them.
        continue_training: with ``clear_nn``, keep ``global_step``.
        saver: the name scope of the saver whose restore op lists the new model's
            keys (e.g. ``save_1``); ``None`` for the default saver.
        candidate_cutoff: how similar (0 to 1) an old key's name must be to an
            unresolved key's to be listed as its candidate.
        allow_missing: accept keys of the new model that have no source (they are
            left out of the output); a source of the wrong shape or dtype is never
            accepted. Part of the inputs so that the one verdict
            (:class:`~ckptmap.migration.verdict.Verdict`) is decided with the plan.
        fill_from: a checkpoint of the new model (e.g. one saved right after
            initialisation; any form ``old`` takes): each key with no source in
            the old checkpoint takes its value from the same key there, which
            must have the new key's dtype and shape, so the output is complete
            and a plain Saver restores it. Keys it lacks stay without a source.
    """

    old: Any
    new_graph: str | os.PathLike[str] | ModelSpec
    step: int | None = None
    alias_map: str | os.PathLike[str] | Mapping[str, str] | None = None
    rules: Sequence[str | Rule] = ()
    auto: bool = True
    clear_nn: bool = False
    continue_training: bool = False
    saver: str | None = None
    candidate_cutoff: float = CANDIDATE_CUTOFF
    allow_missing: bool = False
    fill_from: Any = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.candidate_cutoff <= 1.0:
            raise UsageError(
                f"candidate cutoff {self.candidate_cutoff} is outside 0..1 "
                "(it is a name similarity; 0.5 is the default)"
            )
        if self.step is not None and self.step < 0:
            raise UsageError(f"step {self.step} is negative; a global step is 0 or more")
        if self.saver == "":
            object.__setattr__(self, "saver", None)

    @classmethod
    def of(cls, old: Any, new_graph: Any, options: Mapping[str, Any]) -> PlanInputs:
        """Build from the library functions' ``(old, new_graph, **options)`` form.

        Raises:
            UsageError: an option that planning does not know.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise UsageError(
                f"unknown planning option(s) {', '.join(unknown)}; known: "
                + ", ".join(sorted(names - {"old", "new_graph"}))
            )
        return cls(old=old, new_graph=new_graph, **options)

    def parsed_rules(self) -> list[Rule]:
        """The rules, parsed.

        Raises:
            AliasError: a rule is not ``PATTERN=FORMAT`` or its pattern is invalid.
        """
        return [r if isinstance(r, Rule) else parse_rule(r) for r in self.rules]

    def explicit_map(self) -> dict[str, str] | None:
        """The explicit alias map (new name -> old key), read from its file when it is one."""
        if self.alias_map is None:
            return None
        if isinstance(self.alias_map, Mapping):
            where = "alias map"
            return {n: parse_entry(where, n, v)[0] for n, v in self.alias_map.items()}
        return load_alias_map(self.alias_map)

    def transposes(self) -> dict[str, tuple[int, ...]]:
        """The ``"transpose"`` of each alias-map entry that has one, by entry name."""
        if self.alias_map is None:
            return {}
        if isinstance(self.alias_map, Mapping):
            return transposes_of(self.alias_map, "alias map")
        return transposes_of(load_alias_entries(Path(self.alias_map)), str(self.alias_map))

    @property
    def alias_map_file(self) -> Path | None:
        """The alias map's file, for messages about its entries."""
        if self.alias_map is None or isinstance(self.alias_map, Mapping):
            return None
        return Path(self.alias_map)


def default_of(name: str) -> Any:
    """The default of one :class:`PlanInputs` field (for the CLI's option dataclasses)."""
    for f in dataclasses.fields(PlanInputs):
        if f.name == name:
            if f.default is dataclasses.MISSING:
                raise KeyError(f"PlanInputs.{name} has no default")
            return f.default
    raise KeyError(name)


def load_alias_map(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read an explicit alias map: a JSON object ``{new name: old key}``.

    An entry may also be ``{"from": "old key", "transpose": [1, 0]}``
    (:mod:`ckptmap.migration.transforms`; :meth:`PlanInputs.transposes` reads
    the transposes). The output of ``ckptmap alias`` is accepted too (its
    ``"aliases"`` member).

    Raises:
        MissingInputError: if the file does not exist.
        AliasError: if it is not such a JSON object (the message names the file).
    """
    p = Path(path)
    return {
        str(new): parse_entry(str(p), str(new), old)[0]
        for new, old in load_alias_entries(p).items()
    }


def load_alias_entries(p: Path) -> dict[str, Any]:
    """The raw entries of the alias map file ``p`` (``ckptmap diff`` parses them too).

    Raises:
        MissingInputError, AliasError: as :func:`load_alias_map`.
    """
    try:
        size = p.stat().st_size
        if size > MAX_ALIAS_MAP_BYTES:
            raise AliasError(
                f"{p}: {size} bytes is too large for an alias map "
                f"(at most {MAX_ALIAS_MAP_BYTES} bytes)"
            )
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingInputError(p, "alias map not found (check the --alias-map path)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise AliasError(f"{p}: cannot read the alias map ({err})") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise AliasError(
            f"{p}: not JSON at line {err.lineno} column {err.colno} ({err.msg}); "
            'an alias map is a JSON object {"new name": "old key"}'
        ) from err
    except RecursionError:
        raise AliasError(
            f"{p}: nested too deeply to be an alias map; "
            'an alias map is a flat JSON object {"new name": "old key"}'
        ) from None
    if isinstance(data, dict) and isinstance(data.get("aliases"), dict):
        data = data["aliases"]
    if not isinstance(data, dict):
        raise AliasError(f'{p}: an alias map must be a JSON object {{"new name": "old key"}}')
    return data
