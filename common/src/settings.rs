//! A binary's settings declared once: one struct is both its clap arguments (flag,
//! `DOCKYARD_*` variable, default, help text) and the serde shape of its `--config` TOML file.
//!
//! Precedence: flag, then environment variable, then file, then the declared default. Clap
//! parses the first two and fills in the defaults; only it knows which value came from where
//! (`ArgMatches::value_source`), so the file is laid under the values the user gave rather
//! than merged by a layering crate that cannot see that.

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, FromArgMatches};
use serde::de::DeserializeOwned;
use serde::Serialize;
use toml::{Table, Value};

use crate::config::load_toml;
use crate::error::DockyardError;

/// `--config FILE`: where the other settings' file is, and not itself a key in it.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigFlag {
    /// TOML config file.
    #[arg(long, env = "DOCKYARD_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The settings `S` of a parsed command line that also has a [`ConfigFlag`]: the flags and
/// variables given, over the file's keys, over the declared defaults. The file's keys are the
/// field names (the long flags with `_` for `-`); unknown keys are refused. A table setting
/// (the agent's labels) is merged key by key, the command line winning.
///
/// `S` must be `#[serde(default)]` with `Default` from [`declared_defaults`], so that keys the
/// file leaves out take the declared default.
pub fn load<S>(matches: &ArgMatches) -> Result<S, DockyardError>
where
    S: FromArgMatches + Serialize + DeserializeOwned + Default,
{
    let given = S::from_arg_matches(matches).map_err(|e| DockyardError::invalid("arguments", e.to_string()))?;
    let file = ConfigFlag::from_arg_matches(matches)
        .map_err(|e| DockyardError::invalid("config", e.to_string()))?
        .config;
    let Some(path) = file else { return Ok(given) };
    let from_file: S = load_toml(Some(path.as_path()))?;
    let mut merged = table(&from_file, &path)?;
    let given = table(&given, &path)?;
    for id in matches.ids().map(|id| id.as_str()) {
        let explicit = matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable));
        // Ids that are not keys (`config`, clap's group of a flattened struct) have no value here.
        if let (true, Some(v)) = (explicit, given.get(id)) {
            overlay(&mut merged, id, v.clone());
        }
    }
    merged
        .try_into()
        .map_err(|e| DockyardError::invalid("config", format!("{}: {e}", path.display())))
}

/// The defaults `S` declares to clap, whatever the environment holds: what an empty command
/// line gives. `Default` of a settings struct, so that its defaults are written only once.
pub fn declared_defaults<S: Args + FromArgMatches>() -> S {
    let cmd = S::augment_args(Command::new("defaults")).mut_args(|a| a.env(None::<&'static str>));
    let matches = cmd
        .try_get_matches_from(["defaults"])
        .unwrap_or_else(|e| panic!("a settings struct needs no argument: {e}"));
    S::from_arg_matches(&matches).unwrap_or_else(|e| panic!("a settings struct's defaults parse: {e}"))
}

fn table<S: Serialize>(s: &S, path: &Path) -> Result<Table, DockyardError> {
    Table::try_from(s).map_err(|e| DockyardError::invalid("config", format!("{}: {e}", path.display())))
}

fn overlay(t: &mut Table, key: &str, v: Value) {
    match (t.get_mut(key), v) {
        (Some(Value::Table(old)), Value::Table(new)) => old.extend(new),
        (_, v) => {
            t.insert(key.to_string(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::{CommandFactory, Parser};
    use serde::Deserialize;

    use super::*;

    #[derive(clap::Args, Serialize, Deserialize, Debug, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct S {
        #[arg(long, env = "DOCKYARD_SETTINGS_TEST_LISTEN", default_value = "127.0.0.1:1")]
        listen: String,
        #[arg(long, env = "DOCKYARD_SETTINGS_TEST_LEASE_MS", default_value_t = 10)]
        lease_ms: u64,
        #[arg(long, env = "DOCKYARD_SETTINGS_TEST_ETCD")]
        etcd: Option<String>,
        #[arg(long)]
        on: bool,
        /// Read from the environment by one test only: tests run in parallel.
        #[arg(long, env = "DOCKYARD_SETTINGS_TEST_ZONE")]
        zone: Option<String>,
        #[arg(long = "tag", value_parser = tag)]
        #[serde(with = "tags")]
        tags: Vec<(String, String)>,
    }

    impl Default for S {
        fn default() -> Self {
            declared_defaults()
        }
    }

    fn tag(s: &str) -> Result<(String, String), String> {
        s.split_once('=')
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .ok_or_else(|| format!("'{s}' must be KEY=VALUE"))
    }

    mod tags {
        use super::*;
        pub fn serialize<Ser: serde::Serializer>(v: &[(String, String)], s: Ser) -> Result<Ser::Ok, Ser::Error> {
            v.iter().cloned().collect::<BTreeMap<_, _>>().serialize(s)
        }
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
            Ok(BTreeMap::<String, String>::deserialize(d)?.into_iter().collect())
        }
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        file: ConfigFlag,
        #[command(flatten)]
        settings: S,
    }

    fn load_from(args: &[&str]) -> Result<S, DockyardError> {
        let m = Cli::command()
            .try_get_matches_from(std::iter::once("test").chain(args.iter().copied()))
            .map_err(|e| DockyardError::invalid("arguments", e.to_string()))?;
        load(&m)
    }

    fn file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).expect("write");
        let p = p.to_str().expect("utf-8 temp path").to_string();
        (dir, p)
    }

    #[test]
    fn defaults_come_from_the_declaration() {
        let d = S::default();
        assert_eq!((d.listen.as_str(), d.lease_ms, d.etcd, d.on), ("127.0.0.1:1", 10, None, false));
        let bare = load_from(&[]).expect("empty command line");
        assert_eq!(S { zone: None, ..bare }, S::default());
    }

    #[test]
    fn flags_over_file_over_defaults() {
        let (_dir, p) = file("lease_ms = 20\netcd = \"http://e:2379\"\non = true\n[tags]\na = \"file\"\nb = \"file\"\n");
        let s = load_from(&["--config", &p, "--lease-ms", "30", "--tag", "b=flag", "--tag", "c=flag"]).expect("loads");
        assert_eq!(s.listen, "127.0.0.1:1", "default where neither sets it");
        assert_eq!(s.lease_ms, 30, "the flag wins over the file");
        assert_eq!(s.etcd.as_deref(), Some("http://e:2379"), "the file wins over the default");
        assert!(s.on, "a switch the file turns on stays on");
        let tags: Vec<_> = s.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(tags, ["a=file", "b=flag", "c=flag"], "tables merge key by key");
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let (_dir, p) = file("zone = \"file\"\n");
        std::env::set_var("DOCKYARD_SETTINGS_TEST_ZONE", "env");
        let s = load_from(&["--config", &p]);
        let d = S::default();
        std::env::remove_var("DOCKYARD_SETTINGS_TEST_ZONE");
        assert_eq!(s.expect("loads").zone.as_deref(), Some("env"));
        assert_eq!(d.zone, None, "defaults ignore the environment");
    }

    #[test]
    fn unknown_keys_wrong_types_and_missing_files_are_refused() {
        let (_dir, p) = file("lisen = \"h:1\"\n");
        let e = load_from(&["--config", &p]).expect_err("typo");
        assert!(e.to_string().contains("lisen"), "{e}");
        let (_dir, p) = file("lease_ms = \"ten\"\n");
        let e = load_from(&["--config", &p]).expect_err("a string for a number");
        assert!(e.to_string().contains("lease_ms"), "{e}");
        let (_dir, p) = file("config = \"other.toml\"\n");
        load_from(&["--config", &p]).expect_err("--config is not a key of the file");
        let e = load_from(&["--config", "/nonexistent/dockyard.toml"]).expect_err("missing file");
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
