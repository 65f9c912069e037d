//! Configuration files: TOML whose keys are the long flag names with `_` for `-`.
//! Precedence everywhere: command-line flag, then `DOCKYARD_*` environment variable (clap
//! reads both), then the file, then the built-in default.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::DockyardError;

/// Reads a TOML config file; unknown keys are an error so typos do not pass silently.
pub fn load_toml<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, DockyardError> {
    let Some(path) = path else { return Ok(T::default()) };
    let text =
        std::fs::read_to_string(path).map_err(|e| DockyardError::invalid("config", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| DockyardError::invalid("config", format!("{}: {e}", path.display())))
}

/// Reads an example config file with its commented `# key = value` lines switched on, so a
/// test can check that every setting the example documents is one the binary accepts.
pub fn load_with_examples_enabled<T: DeserializeOwned>(path: &Path) -> Result<T, DockyardError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| DockyardError::invalid("config", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&with_examples_enabled(&text)).map_err(|e| DockyardError::invalid("config", format!("{}: {e}", path.display())))
}

fn with_examples_enabled(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.split('#').next().is_some_and(|kv| kv.contains(" = ")) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct C {
        listen: Option<String>,
    }

    #[test]
    fn reads_known_keys_and_rejects_typos() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "listen = \"127.0.0.1:1\"\n").expect("write");
        let c: C = load_toml(Some(&p)).expect("load");
        assert_eq!(c.listen.as_deref(), Some("127.0.0.1:1"));
        std::fs::write(&p, "lisen = 1\n").expect("write");
        let e = load_toml::<C>(Some(&p)).expect_err("typo");
        assert!(e.to_string().contains("lisen"), "{e}");
    }

    #[test]
    fn documented_examples_are_switched_on() {
        let t = with_examples_enabled("# a file\nx = 1\n# listen = \"h:1\"   # why\n# prose, not a key\n");
        assert_eq!(t, "# a file\nx = 1\nlisten = \"h:1\"   # why\n# prose, not a key");
    }
}
