#!/usr/bin/env python3
"""Dock a DataFrame of SMILES with Dockyard from Python: submit, watch, plot the score
distribution, and draw the best hits.

    pip install ./clients/python matplotlib rdkit tqdm
    dockyard-coordinator &  dockyard-agent &          # or any cluster: DOCKYARD_ENDPOINT
    python3 examples/python/screen.py --out hits/

The five ligands are the demo's kinase inhibitors (SMILES and provenance in
examples/README.md), docked into the demo's ABL1 receptor and box (PyPI dockstring 0.3.4).
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files, no display
import matplotlib.pyplot as plt
import pandas as pd
from rdkit import Chem
from rdkit.Chem import Draw

import dockyard

EXAMPLES = Path(__file__).resolve().parents[1]
LIGANDS = pd.DataFrame(
    {
        "name": ["genistein", "pd173955", "pd180970", "pp1", "pp2"],
        "smiles": [
            "Oc1ccc(cc1)-c1coc2cc(O)cc(O)c2c1=O",
            "CSc1cccc(Nc2ncc3cc(-c4c(Cl)cccc4Cl)c(=O)n(C)c3n2)c1",
            "Cc1cc(Nc2ncc3cc(-c4c(Cl)cccc4Cl)c(=O)n(C)c3n2)ccc1F",
            "Cc1ccc(cc1)-c1nn(C(C)(C)C)c2ncnc(N)c12",
            "Nc1ncnc2c1c(-c1ccc(Cl)cc1)nn2C(C)(C)C",
        ],
    }
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="dockyard-hits", help="folder for scores.png, top_hits.png and hits.csv")
    ap.add_argument("--exhaustiveness", type=int, default=1)
    ap.add_argument("--top", type=int, default=4)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    client = dockyard.Client()  # DOCKYARD_ENDPOINT, DOCKYARD_TOKEN, DOCKYARD_TLS_CA
    job = client.submit(
        receptor=str(EXAMPLES / "receptor.pdbqt"),
        ligands=LIGANDS,
        box=str(EXAMPLES / "box.toml"),
        exhaustiveness=args.exhaustiveness,
        name="python-example",
    )
    print(f"job {job}: {len(LIGANDS)} ligands")
    final = client.wait(job, progress=True)
    if final.state != "succeeded":
        raise SystemExit(f"job {job} ended {final.state}: {client.report(job).failures}")

    hits = client.results(job)
    hits.to_csv(out / "hits.csv", index=False)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(hits["score"], bins=max(5, len(hits) // 2), color="#3b6ea5")
    ax.set_xlabel("Vina score (kcal/mol)")
    ax.set_ylabel("ligands")
    ax.set_title(f"{len(hits)} ligands, best {hits['score'].min():.2f}")
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=120)

    top = hits.head(args.top)
    mols = [Chem.MolFromSmiles(s) for s in top["smiles"]]
    legends = [f"{r.ligand}  {r.score:.2f}" for r in top.itertuples()]
    Draw.MolsToGridImage(mols, molsPerRow=min(4, len(mols)), subImgSize=(260, 220), legends=legends).save(out / "top_hits.png")

    print(top[["rank", "ligand", "score", "smiles"]].to_string(index=False))
    print(f"wrote {out / 'scores.png'}, {out / 'top_hits.png'} and {out / 'hits.csv'}")


if __name__ == "__main__":
    main()
