//! The caps of [`ReadLimits`]: gzip bombs, oversized gzip files and records, and the
//! bounds on names and messages taken from the file.

// Panicking on unexpected data is what a test should do.
#![allow(clippy::unwrap_used)]

use std::io::{self, Cursor, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::*;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Counts what the reader under test took, to show that a bomb is refused early.
struct Taken<R> {
    inner: R,
    taken: Arc<AtomicU64>,
}

impl<R: Read> Read for Taken<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.taken.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn read_gz(name: &str, gz: Vec<u8>, limits: ReadLimits) -> (Vec<Result<MolRecord, RecordError>>, u64) {
    let taken = Arc::new(AtomicU64::new(0));
    let reader = Taken {
        inner: Cursor::new(gz),
        taken: Arc::clone(&taken),
    };
    let (_, iter) = library_from_reader(reader, name, limits).unwrap();
    let items = iter.collect();
    (items, taken.load(Ordering::Relaxed))
}

fn smiles_lines(n: usize) -> String {
    // Distinct lines, so gzip cannot compress them much more than real SMILES.
    (0..n).map(|i| format!("C{}O mol{i}\n", "C".repeat(i % 13))).collect()
}

#[test]
fn ten_megabytes_of_zeros_is_refused_as_a_gzip_bomb() {
    let gz = gzip(&vec![0u8; 10 << 20]);
    assert!(gz.len() < 20 << 10, "{}", gz.len());
    let (items, _) = read_gz("bomb.sdf.gz", gz, ReadLimits::default());
    let last = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(last.kind, RecordErrorKind::Limit(FileLimit::GzipRatio(100)), "{last}");
    assert!(last.ends_file());
    assert!(last.reason.contains("100 times"), "{last}");
}

#[test]
fn a_gigabyte_expansion_stops_after_the_first_megabytes() {
    // 1000 gzip members of 1 MiB of zeros each: 1 GiB out of about 1 MB, built cheaply.
    let member = gzip(&vec![0u8; 1 << 20]);
    let gz: Vec<u8> = member.iter().copied().cycle().take(member.len() * 1000).collect();
    let started = std::time::Instant::now();
    let (items, taken) = read_gz("bomb.smi.gz", gz, ReadLimits::default());
    let last = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(last.kind, RecordErrorKind::Limit(FileLimit::GzipRatio(100)), "{last}");
    // Refused once about GZIP_RATIO_GRACE_BYTES came out: a few members read, not 1000.
    assert!(taken < 64 << 10, "read {taken} compressed bytes before refusing");
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn decompressed_size_cap_ends_the_file() {
    let text = smiles_lines(20_000);
    let gz = gzip(text.as_bytes());
    // Real text: well under the ratio cap, so only the size cap can trip.
    assert!(text.len() < gz.len() * 100);
    let limits = ReadLimits {
        max_decompressed_bytes: 100_000,
        ..ReadLimits::default()
    };
    let (items, _) = read_gz("big.smi.gz", gz.clone(), limits);
    let (last, records) = items.split_last().unwrap();
    let last = last.as_ref().unwrap_err();
    assert_eq!(last.kind, RecordErrorKind::Limit(FileLimit::DecompressedBytes(100_000)), "{last}");
    assert!(last.reason.contains("100000"), "{last}");
    assert!(!records.is_empty() && records.iter().all(Result::is_ok));
    let read: usize = records.iter().map(|r| r.as_ref().unwrap().text.len()).sum();
    assert!(read <= 100_000, "{read}");

    // The same file under the default caps reads whole.
    let (items, _) = read_gz("big.smi.gz", gz, ReadLimits::default());
    assert_eq!(items.len(), 20_000);
    assert!(items.iter().all(Result::is_ok));
}

#[test]
fn corrupt_or_truncated_gzip_ends_the_file_as_unreadable() {
    let text = smiles_lines(2000);
    let gz = gzip(text.as_bytes());
    for bad in [gz[..gz.len() / 2].to_vec(), b"not gzip at all".to_vec()] {
        let (items, _) = read_gz("lib.smi.gz", bad, ReadLimits::default());
        let last = items.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.kind, RecordErrorKind::Unreadable, "{last}");
        assert!(last.ends_file());
    }
}

#[test]
fn record_cap_is_per_record_and_reading_goes_on() {
    let filler = "    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0\n";
    let mut text = String::from("big\n\n\n");
    text.push_str(&filler.repeat(40));
    text.push_str("$$$$\n");
    text.push_str("CCO ethanol\n");
    let limits = ReadLimits {
        max_record_bytes: 1000,
        ..ReadLimits::default()
    };
    let items: Vec<_> = read_library_with(text.as_bytes(), LibraryFormat::Sdf, "lib", limits).collect();
    let e = items[0].as_ref().unwrap_err();
    assert_eq!(e.kind, RecordErrorKind::TooLarge);
    assert!(e.reason.contains("1000-byte limit"), "{e}");
    assert!(!e.ends_file());
    assert_eq!(e.name, "big");

    // One line over a cap below the line cap is an oversized record too.
    let text = format!("{} long\nCCO ethanol\n", "C".repeat(2000));
    let items: Vec<_> = read_library_with(text.as_bytes(), LibraryFormat::Smiles, "lib", limits).collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_ref().unwrap_err().kind, RecordErrorKind::TooLarge);
    assert_eq!(items[1].as_ref().unwrap().name, "ethanol");
}

#[test]
fn names_and_quoted_text_are_clipped() {
    let title = "T".repeat(100_000);
    let text = format!("{title}\n\n\n  0  0  0  0  0  0  0  0  0  0999 V2000\nM  END\n$$$$\n");
    let items: Vec<_> = read_library(text.as_bytes(), LibraryFormat::Sdf, "lib").collect();
    let name = match &items[0] {
        Ok(r) => &r.name,
        Err(e) => &e.name,
    };
    assert_eq!(name.chars().count(), MAX_NAME_CHARS + 3, "{}", name.len());
    assert!(name.ends_with("..."));

    // A PDBQT atom record whose "atom type" is the rest of a very long line.
    let atom = format!(
        "ATOM      1  C   LIG     1       0.000   0.000   0.000  0.00  0.00    +0.000 {}",
        "X".repeat(50_000)
    );
    let text = format!("ROOT\n{atom}\nENDROOT\nTORSDOF 0\n");
    let e = read_library(text.as_bytes(), LibraryFormat::Pdbqt, "lib")
        .next()
        .unwrap()
        .unwrap_err();
    assert!(e.reason.len() < 200, "{} bytes", e.reason.len());
}
