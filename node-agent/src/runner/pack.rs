//! Ligands stored in packs: one object holds thousands of records, and a task's ligand is
//! a byte range of it. The pack is fetched once per node (the input cache) and sliced here.

use std::io::SeekFrom;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncSeekExt};

use dockyard_common::error::DockyardError;

/// Copies `len` bytes at `offset` of the cached pack into the task's own input file.
pub(super) async fn slice_to_file(pack: &Path, offset: u64, len: u64, out: &Path) -> Result<(), DockyardError> {
    let mut f = tokio::fs::File::open(pack).await?;
    let have = f.metadata().await?.len();
    if offset.checked_add(len).is_none_or(|end| end > have) {
        // The coordinator built the range from this very (content-addressed) object.
        return Err(DockyardError::invalid(
            "ligands.artifact.offset",
            format!("record {offset}+{len} lies outside its {have}-byte pack"),
        ));
    }
    let n = usize::try_from(len).map_err(|_| DockyardError::invalid("ligands.artifact.size", "record too large"))?;
    f.seek(SeekFrom::Start(offset)).await?;
    let mut buf = vec![0u8; n];
    f.read_exact(&mut buf).await?;
    tokio::fs::write(out, buf).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_record_is_cut_from_its_pack_and_a_bad_range_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pack = dir.path().join("p.pack");
        tokio::fs::write(&pack, b"C one\nCC two\nCCC three\n").await.expect("write");
        let out = dir.path().join("l.smi");
        slice_to_file(&pack, 6, 7, &out).await.expect("slice");
        assert_eq!(tokio::fs::read(&out).await.expect("read"), b"CC two\n");
        let err = slice_to_file(&pack, 20, 10, &out).await.expect_err("past the end");
        assert!(err.to_string().contains("outside its 23-byte pack"), "{err}");
        assert!(slice_to_file(&pack, u64::MAX, 2, &out).await.is_err());
    }
}
