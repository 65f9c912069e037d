//! Property-style robustness checks: arbitrary bytes and arbitrary truncations of real files
//! must yield records or errors, never a panic, with gap-free indices.

#![allow(clippy::unwrap_used)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/");

const FORMATS: [LibraryFormat; 5] = [
    LibraryFormat::Sdf,
    LibraryFormat::Mol2,
    LibraryFormat::Smiles,
    LibraryFormat::Pdb,
    LibraryFormat::Pdbqt,
];

fn consume(bytes: &[u8], format: LibraryFormat) {
    for (i, item) in read_library(bytes, format, "fuzz").enumerate() {
        let index = match &item {
            Ok(r) => r.index,
            Err(e) => e.index,
        };
        assert_eq!(index, i, "{format:?}");
        if let Err(e) = item {
            assert!(!e.reason.is_empty());
        }
    }
}

/// Bytes biased towards the characters the parsers branch on, so the fuzz reaches past the first line.
fn random_bytes(rng: &mut StdRng) -> Vec<u8> {
    const ALPHABET: &[u8] =
        b"$$$$M  END V30 BEGIN CTAB ATOM BOND COUNTS @<TRIPOS>MOLECULE HETATM CONECT MODEL ENDMDL ROOT TORSDOF 0123456789.-()[]%=#\n\n\n\n";
    let len = rng.random_range(0..600);
    (0..len)
        .map(|_| match rng.random_range(0..4) {
            0 => rng.random::<u8>(),
            _ => ALPHABET[rng.random_range(0..ALPHABET.len())],
        })
        .collect()
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for _ in 0..2000 {
        let bytes = random_bytes(&mut rng);
        for format in FORMATS {
            consume(&bytes, format);
        }
    }
}

#[test]
fn random_truncations_and_edits_of_real_files_never_panic() {
    let files = [
        "ligands/ligands-20-3d.sdf",
        "ligands-100.smi",
        "engine-output-samples/gnina_workshop2021_minimized_sample.sdf",
        "engine-output-samples/vina-1.2.3_1iep_ex8_cpu1_seed1001.out.pdbqt",
    ];
    let mut rng = StdRng::seed_from_u64(42);
    for rel in files {
        let bytes = std::fs::read(format!("{DATA}{rel}")).unwrap();
        for _ in 0..2000 / files.len() {
            let cut = rng.random_range(0..=bytes.len());
            let mut sample = bytes[..cut].to_vec();
            // Sometimes also flip a byte, to hit malformed numbers and counts inside a record.
            if !sample.is_empty() && rng.random_bool(0.5) {
                let at = rng.random_range(0..sample.len());
                sample[at] = rng.random();
            }
            for format in FORMATS {
                consume(&sample, format);
            }
        }
    }
}
