//! How a job's inputs are turned into the PDBQT that some engines read (`needs_pdbqt`):
//! which tool prepares the ligands, whether they are protonated first, and so which tools an
//! agent must have to take the job's tasks. The coordinator routes and keys its result cache
//! from these facts; the agent prepares from them.

use serde::{Deserialize, Serialize};

use super::engine::EngineKind;
use super::InputRef;
use crate::error::DockyardError;

/// The tool names agents advertise (`Register.tools`) and results name.
pub const OBABEL: &str = "obabel";
pub const MEEKO: &str = "meeko";
pub const MOLSCRUB: &str = "molscrub";

/// The pH ligands are protonated at when a job asks for it.
pub const PROTONATION_PH: &str = "7.4";

/// The tool that turns non-PDBQT ligands into PDBQT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrepTool {
    /// Open Babel: `--gen3d` for SMILES, Gasteiger charges.
    #[default]
    Obabel,
    /// Meeko (with RDKit's ETKDG for SMILES), what the Vina authors use.
    Meeko,
}

impl PrepTool {
    pub const ALL: [PrepTool; 2] = [PrepTool::Obabel, PrepTool::Meeko];

    pub fn name(self) -> &'static str {
        match self {
            PrepTool::Obabel => OBABEL,
            PrepTool::Meeko => MEEKO,
        }
    }

    /// A request's `prepare`: empty is the default (obabel); anything unknown is refused.
    pub fn parse(s: &str) -> Result<PrepTool, DockyardError> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(PrepTool::default());
        }
        PrepTool::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| {
            let names: Vec<&str> = PrepTool::ALL.iter().map(|t| t.name()).collect();
            DockyardError::invalid("prepare", format!("unknown preparation tool '{s}' (one of: {})", names.join(", ")))
        })
    }
}

impl std::fmt::Display for PrepTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a job's ligands are prepared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Preparation {
    pub tool: PrepTool,
    /// Protonate at pH [`PROTONATION_PH`]: molscrub with meeko, `-p` with obabel.
    #[serde(default)]
    pub protonate: bool,
}

impl Preparation {
    /// Validates a request's `prepare` and `protonate` for `engine`. An engine that reads
    /// other formats itself prepares nothing, so asking it for a preparation is refused
    /// rather than silently ignored.
    pub fn from_request(engine: EngineKind, prepare: &str, protonate: bool) -> Result<Preparation, DockyardError> {
        let p = Preparation {
            tool: PrepTool::parse(prepare)?,
            protonate,
        };
        if !engine.traits().needs_pdbqt && !p.is_default() {
            let field = if p.tool != PrepTool::default() { "prepare" } else { "protonate" };
            let pdbqt: Vec<&str> = EngineKind::ALL
                .into_iter()
                .filter(|k| k.traits().needs_pdbqt)
                .map(EngineKind::name)
                .collect();
            return Err(DockyardError::invalid(
                field,
                format!(
                    "{engine} reads the input formats itself, so nothing is prepared; preparation applies to {}",
                    pdbqt.join(", ")
                ),
            ));
        }
        Ok(p)
    }

    pub fn is_default(&self) -> bool {
        *self == Preparation::default()
    }

    /// The tools that prepare one non-PDBQT ligand this way.
    pub fn ligand_tools(&self) -> PrepTools {
        match self.tool {
            PrepTool::Obabel => PrepTools {
                obabel: true,
                ..PrepTools::NONE
            },
            PrepTool::Meeko => PrepTools {
                meeko: true,
                molscrub: self.protonate,
                ..PrepTools::NONE
            },
        }
    }
}

/// Preparation tools an agent must have (a set of the advertised names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrepTools {
    pub obabel: bool,
    pub meeko: bool,
    pub molscrub: bool,
}

impl PrepTools {
    pub const NONE: PrepTools = PrepTools {
        obabel: false,
        meeko: false,
        molscrub: false,
    };

    pub fn any(&self) -> bool {
        *self != PrepTools::NONE
    }

    pub fn union(self, o: PrepTools) -> PrepTools {
        PrepTools {
            obabel: self.obabel || o.obabel,
            meeko: self.meeko || o.meeko,
            molscrub: self.molscrub || o.molscrub,
        }
    }

    /// The advertised names of the tools in the set.
    pub fn names(&self) -> Vec<&'static str> {
        [(self.obabel, OBABEL), (self.meeko, MEEKO), (self.molscrub, MOLSCRUB)]
            .into_iter()
            .filter_map(|(on, n)| on.then_some(n))
            .collect()
    }

    /// Whether an agent advertising `have` (tool names) has every tool of the set.
    pub fn met_by<'a>(&self, have: impl IntoIterator<Item = &'a str> + Clone) -> bool {
        self.names().into_iter().all(|n| have.clone().into_iter().any(|h| h == n))
    }
}

/// One conversion an input goes through before the engine reads it: the tool and what it
/// is used for (part of the result cache's key with the tool's version).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrepStep {
    pub tool: &'static str,
    pub role: &'static str,
}

/// The conversions of `ligand` (and of the receptor, which obabel prepares whatever the
/// ligands' tool) for `engine`; empty when the engine reads the files as they are.
pub fn prep_steps(engine: EngineKind, p: Preparation, receptor: Option<&InputRef>, ligand: &InputRef) -> Vec<PrepStep> {
    let mut steps = Vec::new();
    if !engine.traits().needs_pdbqt {
        return steps;
    }
    if receptor.is_some_and(|r| !r.is_pdbqt()) {
        steps.push(PrepStep {
            tool: OBABEL,
            role: "receptor",
        });
    }
    if !ligand.is_pdbqt() {
        match (p.tool, p.protonate) {
            (PrepTool::Obabel, false) => steps.push(PrepStep {
                tool: OBABEL,
                role: "ligand",
            }),
            (PrepTool::Obabel, true) => steps.push(PrepStep {
                tool: OBABEL,
                role: "ligand -p 7.4",
            }),
            (PrepTool::Meeko, protonate) => {
                if protonate {
                    steps.push(PrepStep {
                        tool: MOLSCRUB,
                        role: "ligand pH 7.4",
                    });
                }
                steps.push(PrepStep {
                    tool: MEEKO,
                    role: "ligand",
                });
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn input(format: &str) -> InputRef {
        InputRef {
            name: "x".into(),
            key: "k".into(),
            size: 1,
            format: Arc::from(format),
            offset: None,
            record_sha: None,
        }
    }

    #[test]
    fn prepare_defaults_to_obabel_and_refuses_unknown_tools_naming_the_field() {
        assert_eq!(PrepTool::parse("").expect("empty"), PrepTool::Obabel);
        assert_eq!(PrepTool::parse(" meeko ").expect("meeko"), PrepTool::Meeko);
        let e = PrepTool::parse("corina").expect_err("unknown");
        assert!(e.to_string().contains("prepare") && e.to_string().contains("corina"), "{e}");
        let p = Preparation::from_request(EngineKind::Vina, "meeko", true).expect("vina");
        assert_eq!((p.tool, p.protonate), (PrepTool::Meeko, true));
        assert!(Preparation::from_request(EngineKind::Vina, "", false)
            .expect("default")
            .is_default());
    }

    #[test]
    fn engines_reading_sdf_themselves_refuse_a_preparation() {
        assert!(Preparation::from_request(EngineKind::Smina, "", false).is_ok());
        let e = Preparation::from_request(EngineKind::Smina, "meeko", false).expect_err("smina");
        assert!(e.to_string().contains("prepare") && e.to_string().contains("vina"), "{e}");
        let e = Preparation::from_request(EngineKind::Gnina, "obabel", true).expect_err("gnina");
        assert!(e.to_string().contains("protonate"), "{e}");
    }

    #[test]
    fn tools_needed_follow_the_tool_and_protonation() {
        let meeko = Preparation {
            tool: PrepTool::Meeko,
            protonate: false,
        };
        assert_eq!(meeko.ligand_tools().names(), ["meeko"]);
        let scrubbed = Preparation { protonate: true, ..meeko };
        assert_eq!(scrubbed.ligand_tools().names(), ["meeko", "molscrub"]);
        let obabel_p = Preparation {
            tool: PrepTool::Obabel,
            protonate: true,
        };
        assert_eq!(obabel_p.ligand_tools().names(), ["obabel"]);
        let all = scrubbed.ligand_tools().union(obabel_p.ligand_tools());
        assert!(all.met_by(["molscrub", "obabel", "meeko"]));
        assert!(!all.met_by(["obabel", "meeko"]));
        assert!(PrepTools::NONE.met_by([]));
        assert!(!PrepTools::NONE.any());
    }

    #[test]
    fn steps_name_each_conversion_and_none_for_pdbqt_or_sdf_engines() {
        let meeko = Preparation {
            tool: PrepTool::Meeko,
            protonate: true,
        };
        let pdb = input("pdb");
        let steps = prep_steps(EngineKind::Vina, meeko, Some(&pdb), &input("smi"));
        let named: Vec<String> = steps.iter().map(|s| format!("{} {}", s.tool, s.role)).collect();
        assert_eq!(named, ["obabel receptor", "molscrub ligand pH 7.4", "meeko ligand"]);
        assert!(prep_steps(EngineKind::Vina, meeko, Some(&input("")), &input("pdbqt")).is_empty());
        assert!(prep_steps(EngineKind::Smina, meeko, Some(&pdb), &input("sdf")).is_empty());
        let obabel = prep_steps(EngineKind::Vina, Preparation::default(), None, &input("sdf"));
        assert_eq!(
            obabel,
            [PrepStep {
                tool: OBABEL,
                role: "ligand"
            }]
        );
    }
}
