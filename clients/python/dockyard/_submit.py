"""Turns `submit(...)` arguments into a SubmitJobRequest, as `dockyard submit` does. Files
up to 2 MiB (32 MiB in all) travel inside the request; larger ones are listed for the
caller to stream with UploadInput, which then sets their upload id."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import DockyardError, InvalidArgument
from .types import Stage
from .v1 import common_pb2, job_pb2

INLINE_MAX = 2 << 20
INLINE_TOTAL_MAX = 32 << 20
CHUNK = 1 << 20
LIBRARY_SUFFIXES = (".pdbqt", ".sdf", ".sd", ".mol", ".mol2", ".smi", ".smiles", ".pdb", ".ent")

PathLike = Union[str, "os.PathLike[str]"]
Vec3 = Sequence[float]


@dataclass
class Upload:
    """A file to stream before the request goes: its InputFile gets the upload id."""

    target: job_pb2.InputFile
    name: str
    path: Optional[str] = None
    data: Optional[bytes] = None

    def chunks(self) -> Iterator[job_pb2.UploadInputChunk]:
        yield job_pb2.UploadInputChunk(name=self.name)
        if self.data is not None:
            for i in range(0, len(self.data), CHUNK):
                yield job_pb2.UploadInputChunk(data=self.data[i : i + CHUNK])
            return
        assert self.path is not None
        with open(self.path, "rb") as f:
            while True:
                b = f.read(CHUNK)
                if not b:
                    return
                yield job_pb2.UploadInputChunk(data=b)


class _Inputs:
    def __init__(self) -> None:
        self.budget = INLINE_TOTAL_MAX
        self.uploads: List[Upload] = []

    def file(self, path: PathLike, what: str, into: job_pb2.InputFile) -> None:
        """Fills `into` (a message inside the request: protobuf copies on assignment, so the
        upload id must be set there) from the file at `path`."""
        p = os.fspath(path)
        try:
            size = os.path.getsize(p)
        except OSError as e:
            raise DockyardError(f"{what} {p}: cannot read it ({e.strerror})") from None
        into.name = os.path.basename(p) or "input"
        if size <= INLINE_MAX and size <= self.budget:
            self.budget -= size
            with open(p, "rb") as f:
                into.content = f.read()
            return
        self.uploads.append(Upload(into, into.name, path=p))

    def data(self, name: str, data: bytes, into: job_pb2.InputFile) -> None:
        into.name = name
        if len(data) <= INLINE_MAX and len(data) <= self.budget:
            self.budget -= len(data)
            into.content = data
            return
        self.uploads.append(Upload(into, name, data=data))


def _is_library_file(name: str) -> bool:
    n = name.lower()
    if n.endswith(".gz"):
        n = n[:-3]
    return n.endswith(LIBRARY_SUFFIXES)


def ligand_files(paths: Iterable[PathLike]) -> List[str]:
    """Files in the order given; a folder gives its ligand files sorted by name."""
    out: List[str] = []
    for path in paths:
        p = os.fspath(path)
        if os.path.isdir(p):
            files = sorted(os.path.join(p, f) for f in os.listdir(p) if os.path.isfile(os.path.join(p, f)) and _is_library_file(f))
            if not files:
                raise DockyardError(f"ligands {p}: the folder has no ligand files (.pdbqt .sdf .mol2 .smi .pdb, optionally .gz)")
            out.extend(files)
        elif os.path.exists(p):
            out.append(p)
        else:
            raise DockyardError(f"ligands {p}: no such file or folder")
    return out


def smiles_library(rows: Iterable[Tuple[str, str]]) -> bytes:
    """A .smi file: one `SMILES name` line per ligand."""
    lines = []
    for i, (smi, name) in enumerate(rows):
        smi = str(smi).strip()
        if not smi or any(c.isspace() for c in smi):
            raise InvalidArgument(f"smiles[{i}]: {smi!r} is not a SMILES string (empty, or with spaces)")
        name = " ".join(str(name).split()) if name is not None and str(name).strip() else f"lig{i}"
        lines.append(f"{smi} {name}\n")
    if not lines:
        raise InvalidArgument("smiles: the list is empty")
    return "".join(lines).encode()


def _smiles_rows(smiles: Any, smiles_column: str, name_column: Optional[str]) -> List[Tuple[str, str]]:
    if hasattr(smiles, "columns"):  # a pandas DataFrame
        if smiles_column not in smiles.columns:
            raise InvalidArgument(f"the DataFrame has no {smiles_column!r} column (columns: {list(smiles.columns)}); pass smiles_column=")
        names = smiles[name_column] if name_column and name_column in smiles.columns else [None] * len(smiles)
        return list(zip(smiles[smiles_column], names))
    if isinstance(smiles, Mapping):
        return [(s, n) for n, s in smiles.items()]
    if isinstance(smiles, (str, bytes)):
        raise InvalidArgument("smiles: give a list of SMILES strings, not one string")
    rows = []
    for item in smiles:
        if isinstance(item, (tuple, list)):
            rows.append((item[0], item[1] if len(item) > 1 else None))
        else:
            rows.append((item, None))
    return rows


def _vec3(what: str, v: Optional[Vec3]) -> Optional[common_pb2.Vec3]:
    if v is None:
        return None
    try:
        x, y, z = (float(c) for c in v)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what}: expected three numbers (x, y, z), got {v!r}") from None
    return common_pb2.Vec3(x=x, y=y, z=z)


def _box(center: Optional[Vec3], size: Optional[Vec3], box: Any) -> Optional[common_pb2.DockingBox]:
    if box is not None:
        if center is not None or size is not None:
            raise InvalidArgument("give either box= or center= and size=, not both")
        if isinstance(box, (str, os.PathLike)):
            from .config import _read_toml_any

            box = _read_toml_any(os.fspath(box))
        if not isinstance(box, Mapping) or "center" not in box or "size" not in box:
            raise InvalidArgument("box: expected {'center': [x, y, z], 'size': [x, y, z]} or a TOML file with center and size")
        center, size = box["center"], box["size"]
    if center is None and size is None:
        return None
    if center is None or size is None:
        raise InvalidArgument("give both center= and size= (or box=)")
    return common_pb2.DockingBox(center=_vec3("center", center), size=_vec3("size", size))


def _stage(i: int, s: Union[Stage, Mapping[str, Any]], inputs: _Inputs, st: job_pb2.Stage) -> None:
    """Fills `st`, a stage inside the request."""
    if isinstance(s, Mapping):
        unknown = set(s) - set(Stage.__dataclass_fields__)
        if unknown:
            raise InvalidArgument(f"stage {i + 1}: unknown key(s) {sorted(unknown)}; the keys are {sorted(Stage.__dataclass_fields__)}")
        s = Stage(**s)
    st.CopyFrom(job_pb2.Stage(
        name=s.name or "",
        engine=s.engine or "",
        params=common_pb2.EngineParams(
            exhaustiveness=s.exhaustiveness or 0,
            num_modes=s.num_modes or 0,
            seed=s.seed or 0,
            scoring=s.scoring or "",
            mode=s.mode or "",
            cnn_scoring=s.cnn_scoring or "",
            cnn_model=s.cnn_model or "",
            search_mode=s.search_mode or "",
            no_gpu=s.no_gpu,
        ),
        batch_size=s.batch_size or 0,
        timeout_s=s.timeout_s or 0,
        rank_by=s.rank_by or "",
    ))
    if s.gpus is not None:
        st.gpus_per_task = s.gpus
    if s.cpus_per_task is not None:
        st.cpus_per_task = s.cpus_per_task
    if s.keep is not None:
        keep = str(s.keep).strip()
        if keep.endswith("%"):
            try:
                st.keep_percent = float(keep[:-1])
            except ValueError:
                raise InvalidArgument(f"stage {i + 1}: keep={s.keep!r} is not a share (keep='10%')") from None
        else:
            try:
                st.keep_top = int(keep)
            except ValueError:
                raise InvalidArgument(f"stage {i + 1}: keep={s.keep!r} is not a number of ligands or a share ('10%')") from None
            if st.keep_top == 0:
                raise InvalidArgument(f"stage {i + 1}: keep=0 keeps nothing; keep a number of ligands (500) or a share ('5%')")
    if s.max_score is not None:
        st.max_score = float(s.max_score)
    if s.receptor is not None:
        inputs.file(s.receptor, f"stage {i + 1} receptor", st.receptor)
    b = _box(s.center, s.size, None)
    if b is not None:
        st.box.CopyFrom(b)


def build(
    *,
    receptor: Optional[PathLike],
    ligands: Any,
    smiles: Any,
    smiles_column: str,
    name_column: Optional[str],
    center: Optional[Vec3],
    size: Optional[Vec3],
    box: Any,
    autobox_ligand: Optional[PathLike],
    autobox_add: Optional[float],
    engine: str,
    exhaustiveness: Optional[int],
    num_modes: Optional[int],
    seed: Optional[int],
    priority: int,
    batch_size: Optional[int],
    max_attempts: Optional[int],
    timeout_s: Optional[int],
    name: Optional[str],
    gpus: Optional[int],
    cpus_per_task: Optional[int],
    scoring: Optional[str],
    mode: Optional[str],
    cnn_scoring: Optional[str],
    cnn_model: Optional[str],
    no_gpu: bool,
    prepare: Optional[str],
    protonate: bool,
    search_mode: Optional[str],
    fresh: bool,
    skip_invalid: bool,
    count: Optional[int],
    sleep_ms: Optional[int],
    stages: Optional[Sequence[Union[Stage, Mapping[str, Any]]]],
    labels: Optional[Mapping[str, str]],
) -> Tuple[job_pb2.SubmitJobRequest, List[Upload]]:
    req = job_pb2.SubmitJobRequest(
        name=name or "",
        engine=engine,
        priority=priority,
        batch_size=batch_size or 0,
        max_attempts=max_attempts or 0,
        timeout_s=timeout_s or 0,
        gpus_per_task=gpus or 0,
        params=common_pb2.EngineParams(
            exhaustiveness=exhaustiveness or 0,
            num_modes=num_modes or 0,
            seed=seed or 0,
            sleep_ms=sleep_ms or 0,
            scoring=scoring or "",
            mode=mode or "",
            cnn_scoring=cnn_scoring or "",
            cnn_model=cnn_model or "",
            no_gpu=no_gpu,
            search_mode=search_mode or "",
        ),
        fresh=fresh,
        prepare=prepare or "",
        protonate=protonate,
        labels=dict(labels or {}),
    )
    if cpus_per_task is not None:
        req.cpus_per_task = cpus_per_task
    inputs = _Inputs()
    for i, s in enumerate(stages or []):
        _stage(i, s, inputs, req.stages.add())
    has_library = ligands is not None or smiles is not None
    if engine == "sleep" and not stages:
        if receptor is not None or has_library:
            raise InvalidArgument("the sleep engine takes no input files; use count=N (and sleep_ms=MS)")
        if not count:
            raise InvalidArgument("the sleep engine needs count=N (number of tasks)")
        req.sleep_task_count = count
        return req, inputs.uploads
    if count is not None or (sleep_ms is not None and engine != "sleep"):
        raise InvalidArgument("count= and sleep_ms= are for engine='sleep' only (and a funnel takes a library, not count=)")
    if receptor is None:
        raise InvalidArgument("receptor: missing (a .pdbqt or .pdb file)")
    if not has_library:
        raise InvalidArgument("ligands: missing; give ligands= (files, folders or a DataFrame) or smiles= (a list)")
    if autobox_ligand is not None:
        if _box(center, size, box) is not None:
            raise InvalidArgument("give either autobox_ligand= or a box (center=/size= or box=), not both")
        inputs.file(autobox_ligand, "autobox_ligand", req.autobox_ligand)
        req.autobox_add = autobox_add or 0.0
    else:
        b = _box(center, size, box)
        if b is None:
            raise InvalidArgument("the box is missing: give center=(x, y, z) and size=(x, y, z), box=, or autobox_ligand=")
        req.box.CopyFrom(b)
    req.skip_invalid = skip_invalid
    inputs.file(receptor, "receptor", req.receptor)
    if ligands is not None and hasattr(ligands, "columns"):
        smiles, ligands = ligands, None
    if ligands is not None:
        paths = [ligands] if isinstance(ligands, (str, os.PathLike)) else list(ligands)
        for f in ligand_files(paths):
            inputs.file(f, "ligands", req.ligands.add())
    if smiles is not None:
        inputs.data("smiles.smi", smiles_library(_smiles_rows(smiles, smiles_column, name_column)), req.ligands.add())
    return req, inputs.uploads

