"""Dockyard's driver for the rustina engine (PyPI `rustina`); the agent embeds this file
and runs it as `python3 rustina_dock.py job.json` inside a task's work directory.

The job file names the receptor, the ligands and the search settings. Each ligand is docked
with `rustina.dock()` (measured: `rustina.screen()` with shared grids costs the same per
ligand here and returns only the top pose), so one ligand's failure is caught and recorded
for it alone. Per ligand it writes `out/lig_<index>.json`, `{"poses": [...]}` with each
pose's scores or `{"error": "..."}`, and for a docked ligand `out/lig_<index>_out.pdbqt`,
one MODEL per pose with AutoDock Vina's `REMARK VINA RESULT` line (affinity, RMSD lower and
upper bound to the top pose, as Vina computes them), so Vina's pose readers read it.
"""

import json
import math
import os
import sys
import time


def heavy_atoms(pdbqt):
    """(element, xyz) of the heavy atoms, in file order."""
    atoms = []
    for line in pdbqt.splitlines():
        if line.startswith(("ATOM", "HETATM")) and len(line) >= 54:
            kind = line[77:79].strip() if len(line) >= 78 else ""
            if kind in ("H", "HD", "HS"):
                continue
            atoms.append((kind, (float(line[30:38]), float(line[38:46]), float(line[46:54]))))
    return atoms


def rmsd_bounds(pose, best):
    """Vina's rmsd_lb (each atom to the nearest of its type) and rmsd_ub (atom to atom)."""
    if not pose or len(pose) != len(best):
        return 0.0, 0.0
    ub = lb = 0.0
    for (kind, a), (_, b) in zip(pose, best):
        ub += sum((p - q) ** 2 for p, q in zip(a, b))
        lb += min(sum((p - q) ** 2 for p, q in zip(a, c)) for k, c in best if k == kind)
    n = len(pose)
    return math.sqrt(lb / n), math.sqrt(ub / n)


def pose_file(poses, cnn):
    best = heavy_atoms(poses[0]["pdbqt"])
    out = []
    for i, p in enumerate(poses, 1):
        lb, ub = rmsd_bounds(heavy_atoms(p["pdbqt"]), best)
        out.append("MODEL %d" % i)
        out.append("REMARK VINA RESULT: %9.3f %10.3f %10.3f" % (p["affinity"], lb, ub))
        if cnn:
            out.append("REMARK RUSTINA CNN_SCORE: %.4f CNN_AFFINITY: %.4f" % (p["cnn_score"], p["cnn_affinity"]))
        out.extend(l for l in p["pdbqt"].splitlines() if l.strip())
        out.append("ENDMDL")
    return "\n".join(out) + "\n"


# Exit status when rustina refuses the receptor: every ligand would fail with the same
# reason, which names no file, so the receptor is read once on its own first.
RECEPTOR_REFUSED = 3

# One carbon atom: a ligand rustina always reads, to try the receptor with.
PROBE_LIGAND = (
    "ROOT\n"
    "ATOM      1  C   UNL     1       0.000   0.000   0.000  1.00  0.00     0.000 C \n"
    "ENDROOT\nTORSDOF 0\n"
)


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    import rustina

    cx, cy, cz = job["center"]
    sx, sy, sz = job["size"]
    os.makedirs("out", exist_ok=True)
    probe = os.path.join("out", "receptor_check.pdbqt")
    write(probe, PROBE_LIGAND)
    try:
        rustina.score(job["receptor"], probe)
    except Exception as e:
        print("rustina refused the receptor: %s: %s" % (type(e).__name__, e), flush=True)
        sys.exit(RECEPTOR_REFUSED)
    for lig in job["ligands"]:
        index = lig["index"]
        started = time.monotonic()
        print("ligand %d: start" % index, flush=True)
        try:
            poses = rustina.dock(
                job["receptor"], lig["path"], cx, cy, cz, sx, sy, sz,
                runs=job["runs"], scoring=job["scoring"], search_mode=job["search_mode"],
                seed=job["seed"], skip_cnn=job["skip_cnn"], threads=job["threads"],
                num_modes=job["num_modes"],
            )
            if not poses:
                raise ValueError("rustina returned no poses")
            cnn = not job["skip_cnn"]
            write(os.path.join("out", "lig_%d_out.pdbqt" % index), pose_file(poses, cnn))
            # Without the CNN rustina reports its scores as 0.0: they are left out.
            keep = ("affinity", "empirical_score") + (("cnn_score", "cnn_affinity") if cnn else ())
            result = {"poses": [{k: p[k] for k in keep if k in p} for p in poses]}
        except Exception as e:  # one ligand's failure is that ligand's result
            result = {"error": "%s: %s" % (type(e).__name__, e)}
        write(os.path.join("out", "lig_%d.json" % index), json.dumps(result))
        print("ligand %d: %s in %.1f s" % (index, "error" if "error" in result else "docked",
                                           time.monotonic() - started), flush=True)


if __name__ == "__main__":
    main()
