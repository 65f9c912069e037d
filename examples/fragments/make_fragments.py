#!/usr/bin/env python3
"""A fragment library of any size, made here: small aromatic cores with two substituents,
drawn with a fixed seed, embedded in 3D with RDKit and written as PDBQT with meeko.

Why made and not downloaded: a screen of 10,000 drug-like ligands is about 14 CPU-hours of
Vina at exhaustiveness 1 (2-18 s each), while fragments (7-16 heavy atoms, at most three
rotatable bonds) dock in well under a second, so a real screen of thousands of ligands
fits on a small machine (docs/benchmarks.md, compressed artifacts). Nothing here is copied
from a database: every molecule is a core below with substituents below, so the library is
the same on every machine for the same --count and --seed.

    python3 examples/fragments/make_fragments.py --count 10000 --out /tmp/frag10k
writes /tmp/frag10k/frag-00000.pdbqt ... and /tmp/frag10k.smi (SMILES and id per line).
Needs rdkit and meeko (PyPI).
"""

import argparse
import os
import random
import sys

from meeko import MoleculePreparation, PDBQTWriterLegacy
from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem, Descriptors

# Cores with two open positions each, written as [*:1] and [*:2]. Substituents use ring
# digit 9 (cyclopropyl), which no core uses: a shared digit would close the wrong ring.
CORES = [
    "c1cc([*:1])ccc1[*:2]",
    "c1cc([*:1])cc([*:2])c1",
    "c1ccc([*:1])c([*:2])c1",
    "n1cc([*:1])ccc1[*:2]",
    "n1ccc([*:1])cc1[*:2]",
    "c1nc([*:1])ncc1[*:2]",
    "c1cc([*:1])sc1[*:2]",
    "c1cc([*:1])oc1[*:2]",
    "c1c([*:1])n[nH]c1[*:2]",
    "c1nc([*:1])[nH]c1[*:2]",
    "c1cc2cc([*:1])ccc2cc1[*:2]",
    "c1ccc2[nH]c([*:1])cc2c1[*:2]",
    "c1cnc2ccc([*:1])cc2c1[*:2]",
    "O=C1NC(=O)C([*:1])C1[*:2]",
    "c1nc([*:1])sc1[*:2]",
    "c1nc([*:1])oc1[*:2]",
    "n1c([*:1])cccc1[*:2]",
    "c1ncc([*:1])nc1[*:2]",
    "C1CN([*:1])CCN1[*:2]",
    "C1CC([*:1])CCN1[*:2]",
    "c1ccc2c(c1)oc([*:1])c2[*:2]",
    "c1cc([*:1])c2ncccc2c1[*:2]",
]
SUBSTITUENTS = [
    "[H]", "F", "Cl", "Br", "C", "CC", "O", "N", "OC", "C#N", "C(=O)O", "C(N)=O",
    "[N+](=O)[O-]", "C(F)(F)F", "S(N)(=O)=O", "C(C)=O", "NC(C)=O", "CO", "CN", "C9CC9",
    "I", "SC", "C=C", "C#C", "OC(F)(F)F", "C(C)C", "N(C)C", "S(C)(=O)=O",
]


def assemble(core, a, b):
    smi = core
    for tag, sub in (("[*:1]", a), ("[*:2]", b)):
        if sub == "[H]":
            smi = smi.replace(f"({tag})", "").replace(tag, "")
        else:
            smi = smi.replace(tag, sub)
    mol = Chem.MolFromSmiles(smi)
    return Chem.MolToSmiles(mol) if mol is not None else None


def library(seed):
    seen = set()
    combos = [(c, a, b) for c in CORES for a in SUBSTITUENTS for b in SUBSTITUENTS]
    random.Random(seed).shuffle(combos)
    for core, a, b in combos:
        smi = assemble(core, a, b)
        if smi is None or smi in seen:
            continue
        mol = Chem.MolFromSmiles(smi)
        heavy = mol.GetNumHeavyAtoms()
        if not 7 <= heavy <= 16 or Descriptors.NumRotatableBonds(mol) > 3:
            continue
        # Rings of 3 to 6 atoms only: Meeko opens larger rings into glue atoms (G0, CG0),
        # which plain Vina scores as no real molecule.
        if any(not 3 <= len(r) <= 6 for r in mol.GetRingInfo().AtomRings()):
            continue
        seen.add(smi)
        yield smi


def pdbqt(smi, seed):
    mol = Chem.AddHs(Chem.MolFromSmiles(smi))
    if AllChem.EmbedMolecule(mol, randomSeed=seed) != 0:
        return None
    AllChem.MMFFOptimizeMolecule(mol)
    setups = MoleculePreparation().prepare(mol)
    text, ok, _ = PDBQTWriterLegacy.write_string(setups[0])
    return text if ok and " G0" not in text else None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", required=True, help="folder for the PDBQT files (OUT.smi beside it)")
    a = p.parse_args()
    RDLogger.DisableLog("rdApp.*")
    os.makedirs(a.out, exist_ok=True)
    written = 0
    with open(a.out.rstrip("/") + ".smi", "w") as smi_file:
        for smi in library(a.seed):
            if written == a.count:
                break
            text = pdbqt(smi, a.seed)
            if text is None:
                continue
            name = f"frag-{written:05d}"
            with open(os.path.join(a.out, name + ".pdbqt"), "w") as f:
                f.write(text)
            smi_file.write(f"{smi} {name}\n")
            written += 1
    if written < a.count:
        sys.exit(f"only {written} distinct fragments fit the filters; ask for fewer")
    print(f"{written} fragments in {a.out}")


if __name__ == "__main__":
    main()
