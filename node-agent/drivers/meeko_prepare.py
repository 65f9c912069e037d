"""Dockyard's Meeko ligand preparation driver.

Embedded in the agent binary (include_str!) and written into a task's scratch folder, so an
agent needs only a Python that can import rdkit and meeko (and molscrub to protonate).

    python3 meeko_prepare.py JOBS.json RESULTS.jsonl

JOBS.json: {"seed": int, "protonate": bool, "ph": float,
            "ligands": [{"id": int, "input": path, "format": "smi|sdf|mol2", "output": path}]}

One Python process prepares a whole batch (importing RDKit and Meeko costs about a second).
For each ligand it appends a line {"id": N, "start": true} to RESULTS.jsonl before starting
and {"id": N, "ok": true, "geometry": "how the 3D structure was made"} or
{"id": N, "error": "why"} when done, flushed each time, so the
agent knows which ligand a crash or a timeout interrupted and fails that ligand alone.

SMILES -> RDKit -> 3D with ETKDGv3 (fixed seed) then MMFF94 (UFF where MMFF has no
parameters) -> Meeko's MoleculePreparation -> PDBQTWriterLegacy. SDF/MOL2 keep their
coordinates (hydrogens added at computed positions); a record without 3D coordinates is
embedded like a SMILES. With protonation, molscrub picks the protonation state at the pH
(no tautomer enumeration, the first state) and the 3D structure is generated anew.
"""

import json
import sys


def emit(out, record):
    out.write(json.dumps(record) + "\n")
    out.flush()


def largest_fragment(Chem, mol):
    # Libraries carry salts and solvents ("CCN.Cl"); Meeko prepares one molecule.
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=True)
    if len(frags) <= 1:
        return mol
    return max(frags, key=lambda m: m.GetNumHeavyAtoms())


def read_input(Chem, path, fmt):
    """The molecule and whether it has usable 3D coordinates."""
    if fmt == "smi":
        with open(path) as f:
            tokens = f.read().split()
        if not tokens:
            raise ValueError("empty SMILES file")
        mol = Chem.MolFromSmiles(tokens[0])
        if mol is None:
            raise ValueError("RDKit cannot parse the SMILES '%s'" % tokens[0][:200])
        return mol, False
    if fmt == "sdf":
        supplier = Chem.SDMolSupplier(path, removeHs=False)
        mol = next(iter(supplier), None) if len(supplier) else None
    elif fmt == "mol2":
        mol = Chem.MolFromMol2File(path, removeHs=False)
    else:
        raise ValueError("meeko prepares SMILES, SDF and MOL2 ligands (bond orders needed), not '%s'" % fmt)
    if mol is None:
        raise ValueError("RDKit cannot read the %s record" % fmt)
    has_3d = mol.GetNumConformers() > 0 and mol.GetConformer().Is3D()
    return mol, has_3d


def embed(Chem, AllChem, mol, seed):
    """The molecule with hydrogens in 3D, and how its coordinates were made."""
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    how = "ETKDGv3 seed %d" % seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        # Large or strained molecules often embed only from random starting coordinates.
        params.useRandomCoords = True
        how += " (random coordinates)"
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise ValueError("RDKit ETKDG could not generate 3D coordinates")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
        how += ", MMFF94"
    else:
        AllChem.UFFOptimizeMolecule(mol, maxIters=2000)
        how += ", UFF (no MMFF94 parameters)"
    return mol, how


def prepare_one(ctx, job):
    Chem, AllChem, prep, writer, scrub, seed = ctx
    mol, has_3d = read_input(Chem, job["input"], job["format"])
    mol = largest_fragment(Chem, mol)
    if scrub is not None:
        states = scrub(Chem.RemoveHs(mol))
        if not states:
            raise ValueError("molscrub returned no protonation state")
        mol, has_3d = states[0], False
    if has_3d:
        mol = Chem.AddHs(mol, addCoords=True)
        how = "input coordinates"
    else:
        mol, how = embed(Chem, AllChem, mol, seed)
    setups = prep.prepare(mol)
    if len(setups) != 1:
        raise ValueError("meeko made %d molecule setups, expected 1" % len(setups))
    text, ok, err = writer.write_string(setups[0])
    if not ok:
        raise ValueError("meeko cannot write PDBQT: %s" % (err or "no reason given").strip())
    with open(job["output"], "w") as f:
        f.write(text)
    return how


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: meeko_prepare.py JOBS.json RESULTS.jsonl\n")
        return 2
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem
    from meeko import MoleculePreparation, PDBQTWriterLegacy

    # RDKit's warnings go to the log; reasons travel in the results.
    RDLogger.DisableLog("rdApp.info")
    scrub = None
    if spec.get("protonate"):
        from molscrub import Scrub

        scrub = Scrub(ph_low=float(spec["ph"]), skip_tautomers=True, skip_gen3d=True)
    ctx = (Chem, AllChem, MoleculePreparation(), PDBQTWriterLegacy, scrub, int(spec["seed"]))
    with open(sys.argv[2], "a") as out:
        for job in spec["ligands"]:
            emit(out, {"id": job["id"], "start": True})
            try:
                how = prepare_one(ctx, job)
                emit(out, {"id": job["id"], "ok": True, "geometry": how})
            except Exception as e:  # one ligand's failure is reported, the batch goes on
                reason = ("%s: %s" % (type(e).__name__, e)).strip().replace("\n", " ")
                emit(out, {"id": job["id"], "error": reason[:500]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
