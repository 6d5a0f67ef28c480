"""Experiments: job files and sweeps, expanded into plain job specs and validated whole before anything is
enqueued. An error names the file, the job and the field."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared import kinds
from shared.errors import BadInput
from shared.specs import AnySpec, RunSpec, TrainSpec, parse_spec, seed_randn
from shared.vocab import Bundled, Device, Kind, Op, OpDtype, Priority

MAX_JOBS_PER_SUBMIT = 10_000  # a typo in a sweep should not enqueue a million jobs
EXTRA_KEYS = ("sweep", "seeds", "priority", "queue")


@dataclass
class Planned:
    """One job to submit: its spec, where it goes, and the swept values that made it."""

    spec: AnySpec
    priority: str = Priority.NORMAL.value
    queue: str | None = None
    swept: dict[str, Any] = field(default_factory=dict)


def field_name(key: str) -> str:
    """Flags and file keys may be written `hidden-size` or `hidden_size`."""
    return key.strip().replace("-", "_")


def parse_sweep_option(text: str, flag: str = "--sweep", form: str = "FIELD=V1,V2,... such as lr=1e-6,1e-5"
                       ) -> tuple[str, list[Any]]:
    """`lr=1e-6,1e-5` -> ("lr", [1e-06, 1e-05]); values read as JSON when they can be (numbers), else text."""
    name, sep, values = text.partition("=")
    if not sep or not name.strip() or not values.strip():
        raise BadInput(f"{flag}: expected {form} (got {text!r})")
    return field_name(name), [_value(v.strip()) for v in values.split(",") if v.strip()]


def parse_param(text: str) -> tuple[str, Any]:
    """`--param lr=1e-3` -> ("lr", 0.001): the whole value read as JSON when it can be ([1, 2], true), else text."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise BadInput(f"--param: expected KEY=VALUE such as lr=1e-3 (got {text!r})")
    return field_name(name), _value(value.strip())


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def expand(entry: dict[str, Any], where: str) -> list[Planned]:
    """One entry (a job, maybe with `sweep`, `seeds`, `priority`, `queue`) -> the jobs it stands for."""
    if not isinstance(entry, dict):
        raise BadInput(f"{where}: a job must be a mapping of fields")
    body = {field_name(k): v for k, v in entry.items()}
    body["kind"] = kinds.entry_kind(body)
    sweep = body.pop("sweep", None) or {}
    seeds = body.pop("seeds", None)
    priority = body.pop("priority", Priority.NORMAL.value)
    queue = body.pop("queue", None)
    if priority not in Priority.values():
        raise BadInput(f"{where}: priority: must be {', '.join(Priority.values())} (got {priority!r})")
    if not isinstance(sweep, dict) or not all(isinstance(v, list) and v for v in sweep.values()):
        raise BadInput(f"{where}: sweep: must map fields to non-empty lists of values")
    sweep = {field_name(k): v for k, v in sweep.items()}
    grid: dict[str, list[Any]] = dict(sweep)
    if seeds is not None:
        if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
            raise BadInput(f"{where}: seeds: must be a whole number of at least 1")
        if "seed" in grid:
            raise BadInput(f"{where}: give either seeds or a seed sweep, not both")
        base = body.get("seed", 0)
        grid["seed"] = [base + k for k in range(seeds)] if isinstance(base, int) else [base]
    combos = list(itertools.product(*grid.values())) if grid else [()]
    if len(combos) > MAX_JOBS_PER_SUBMIT:
        raise BadInput(f"{where}: the sweep makes {len(combos):,} jobs, over the limit of {MAX_JOBS_PER_SUBMIT:,}")
    planned = []
    for combo in combos:
        values = dict(zip(grid, combo, strict=True))
        label = where + (" (" + ", ".join(f"{k}={v}" for k, v in values.items()) + ")" if values else "")
        try:
            spec = parse_spec(seed_randn(with_values(body, values)))
        except BadInput as e:
            raise BadInput(f"{label}: {e}") from None
        planned.append(Planned(spec, priority, queue, values))
    return planned


def with_values(body: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A job's spec with one combination of swept values: a job function's swept names that are not fields of
    its spec (function, seed, device, timeout) are its params."""
    if body.get("kind") != Kind.RUN.value:
        return {**body, **values}
    fields = set(RunSpec.model_fields)
    params = {**(body.get("params") or {}), **{k: v for k, v in values.items() if k not in fields}}
    return {**body, **{k: v for k, v in values.items() if k in fields}, "params": params}


def expand_all(entries: Iterable[tuple[str, dict[str, Any]]]) -> list[Planned]:
    planned: list[Planned] = []
    for where, entry in entries:
        planned.extend(expand(entry, where))
        if len(planned) > MAX_JOBS_PER_SUBMIT:
            raise BadInput(f"{where}: over {MAX_JOBS_PER_SUBMIT:,} jobs in one submit")
    return planned


def load_job_file(path: Path, read_operand: Any, read_data: Any = None) -> list[Planned]:
    """A YAML or JSON job file: a list of jobs, or `{"jobs": [...]}`. `read_operand(value, label, base_dir, dtype)`
    turns an op job's `a`/`b` into its spec form, `read_data(entry, base_dir, label)` a training job's `data` or
    `dataset` (paths are relative to the file)."""
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read it: {e}") from None
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise BadInput(f"{path}: not valid JSON: {e}") from None
    else:
        doc = _read_yaml(text, path)
    jobs = doc.get("jobs") if isinstance(doc, dict) else doc
    if not isinstance(jobs, list) or not jobs:
        raise BadInput(f"{path}: expected a list of jobs (or a mapping with a `jobs` list)")
    entries = []
    for k, entry in enumerate(jobs, start=1):
        where = f"{path}: job {k}"
        job_kind = kinds.find(kinds.entry_kind(entry)) if isinstance(entry, dict) else None
        if job_kind is not None and job_kind.operands:
            entry = dict(entry)
            for name in job_kind.operands:
                if name in entry:
                    entry[name] = read_operand(entry[name], f"{where}: {name}", path.parent, entry.get("dtype"))
        if read_data is not None and isinstance(entry, dict):
            entry = read_data(entry, path.parent, f"{where}: data")
        entries.append((where, entry))
    return expand_all(entries)


# YAML 1.1 (PyYAML's) reads `1e-3` as a string; YAML 1.2, JSON and every user read it as a number.
_YAML_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$")


def _read_yaml(text: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError:  # a dependency; only a broken install lacks it
        raise BadInput(f"{path}: reading YAML needs PyYAML, which this install lacks (pip install pyyaml); "
                       "or write the job file as JSON") from None

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML_FLOAT, list("-+0123456789."))
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader: no Python objects
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BadInput(f"{path}: not valid YAML{where}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise BadInput(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None


# --- the job file's JSON Schema, generated from the specs -------------------------------------------------

def _hyphen(name: str) -> str:
    return name.replace("_", "-")


class _Extras(BaseModel):
    model_config = ConfigDict(alias_generator=_hyphen, populate_by_name=True, extra="forbid")
    sweep: dict[str, list[Any]] | None = Field(None, description="field -> values; the jobs are the grid")
    seeds: int | None = Field(None, ge=1, description="repeat each job with seeds seed, seed+1, ...")
    priority: Priority = Priority.NORMAL
    queue: str | None = None


class TrainEntry(TrainSpec, _Extras):
    model_config = ConfigDict(alias_generator=_hyphen, populate_by_name=True, extra="forbid", frozen=False)
    # a job file names its dataset; the submitted spec holds its reference (shared/datasets.py resolve)
    data: str | None = Field(None, description="a .npz (arrays x, y) or .safetensors (tensors x, y) file, relative "
                                               "to the job file")  # type: ignore[assignment]
    dataset: Bundled | None = Field(None, description="a bundled dataset, instead of data")


class RunEntry(RunSpec, _Extras):
    model_config = ConfigDict(alias_generator=_hyphen, populate_by_name=True, extra="forbid", frozen=False)
    kind: Literal[Kind.RUN]  # required: an entry names its kind to run a function
    sweep: dict[str, list[Any]] | None = Field(None, description="params (or seed, device, timeout) -> values")


class OpEntry(_Extras):
    kind: Literal[Kind.OP] = Kind.OP
    op: Op
    a: Any = Field(description="a literal (a number, nested lists, or text such as '[[1., 2.], [3., 4.]]'), "
                               "randn:SHAPE, or a file path relative to the job file")
    b: Any = Field(description="as a")
    seed: int | None = Field(None, ge=0)
    dtype: OpDtype | None = None
    device: Device = Device.AUTO


def json_schema() -> dict[str, Any]:
    """The job file's schema: a list of jobs, or `{"jobs": [...]}`, each field as `hidden-size` or
    `hidden_size` (both are accepted, as on the command line)."""
    schema = TypeAdapter(list[TrainEntry | RunEntry | OpEntry]).json_schema(by_alias=True)
    for definition in schema["$defs"].values():
        properties = definition.get("properties", {})
        for name in [n for n in properties if "-" in n]:
            properties[name.replace("-", "_")] = properties[name]
    job_list = {"type": "array", "items": schema.pop("items"), "minItems": 1}
    schema.pop("type")
    schema["$defs"]["JobList"] = job_list
    schema["anyOf"] = [{"$ref": "#/$defs/JobList"},
                       {"type": "object", "properties": {"jobs": {"$ref": "#/$defs/JobList"}}, "required": ["jobs"],
                        "additionalProperties": False}]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tensorq job file"
    schema["description"] = "A list of jobs (train or op), or {jobs: [...]}, each with the CLI flags as fields " \
                            "(hidden-size or hidden_size), plus optional sweep, seeds, priority and queue."
    return schema
