"""Write the shipped peptide PDBs (src/boltzflow/data/peptides/SEQ.pdb) with the package's own builder.

    PYTHONPATH=src python docs/results/peptides/build_pdbs.py

The files are exactly what ``boltzflow.systems.peptide_build.build_pdb_text`` gives (deterministic), so a shipped
sequence and a freshly built one are the same molecule in the same atom order (checked in tests/test_peptide.py).
"""

from pathlib import Path

from boltzflow.io import save_text
from boltzflow.systems.peptide_build import build_pdb_text

OUT = Path(__file__).resolve().parents[3] / "src" / "boltzflow" / "data" / "peptides"

for seq in ("AAA", "AAAAA"):
    save_text(OUT / f"{seq}.pdb", build_pdb_text(seq))
    print(OUT / f"{seq}.pdb")
