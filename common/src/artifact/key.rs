//! Artifact keys are built by the server from ids only, and checked again here so no key
//! can escape its namespace (no `..`, no absolute paths, no odd bytes).

use std::fmt;

use crate::error::DockyardError;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactKey(String);

impl ArtifactKey {
    pub fn new(key: impl Into<String>) -> Result<Self, DockyardError> {
        let key = key.into();
        let bad = |why: &str| DockyardError::invalid("artifact key", format!("'{key}': {why}"));
        if key.is_empty() || key.len() > 1024 {
            return Err(bad("must be 1-1024 bytes"));
        }
        for seg in key.split('/') {
            if seg.is_empty() {
                return Err(bad("empty path segment"));
            }
            if seg == "." || seg == ".." {
                return Err(bad("relative path segment"));
            }
            if !seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
                return Err(bad("only letters, digits, '-', '_', '.' and '/' are allowed"));
            }
        }
        Ok(ArtifactKey(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn starts_with(&self, prefix: &str) -> bool {
        self.0.starts_with(prefix)
    }
}

impl fmt::Display for ArtifactKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_absolute_keys_are_refused() {
        for k in ["../x", "/etc/passwd", "a//b", "a/./b", "a/b c", "", "a/../../b"] {
            assert!(ArtifactKey::new(k).is_err(), "{k}");
        }
        assert!(ArtifactKey::new("orgs/default/jobs/abc/t.0/lig_1.pdbqt").is_ok());
    }
}
