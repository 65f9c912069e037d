//! Reading the systemd units and their environment files.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::read;

/// An INI-like unit: section → key → values (keys may repeat).
pub(crate) fn parse_unit(p: &Path) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for (i, line) in read(p).lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = Some(s.to_string());
            out.entry(s.to_string()).or_default();
            continue;
        }
        let sec = section
            .clone()
            .unwrap_or_else(|| panic!("{}:{}: key outside a section", p.display(), i + 1));
        let (k, v) = l
            .split_once('=')
            .unwrap_or_else(|| panic!("{}:{}: not KEY=VALUE: {l}", p.display(), i + 1));
        assert!(!l.ends_with('\\'), "{}:{}: keep units on one line per key", p.display(), i + 1);
        out.entry(sec)
            .or_default()
            .entry(k.trim().to_string())
            .or_default()
            .push(v.trim().to_string());
    }
    out
}

/// KEY=VALUE lines of an environment file.
pub(crate) fn env_file(p: &Path) -> BTreeMap<String, String> {
    read(p)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{}: not KEY=VALUE: {l}", p.display()));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// (binary, unit file, env example file).
pub(crate) const UNITS: [(&str, &str, &str); 2] = [
    ("dockyard-coordinator", "dockyard-coordinator.service", "coordinator.env.example"),
    ("dockyard-agent", "dockyard-agent.service", "agent.env.example"),
];
