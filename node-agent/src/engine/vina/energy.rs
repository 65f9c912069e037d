//! The energy terms Vina 1.2 writes under each pose's `REMARK VINA RESULT` line, kept as
//! result fields. The affinity is `(inter + intra - unbound) / (1 + w * rotatable bonds)`,
//! so the terms let a chemist see why a pose scores as it does. Vina 1.2.3 sometimes takes
//! an unbound energy far above the pose's own intramolecular energy, which inflates the
//! affinity by several kcal/mol (a 15-atom fragment at -11.6 in one of our screens, -7.4
//! when docked again with another seed at exhaustiveness 4); with `vina_unbound` beside
//! `vina_intra` such a hit can be found and filtered. The MODEL blocks are walked again
//! here rather than in `parse_vina_poses`, which every engine's poses go through and which
//! has no terms to carry for the others.

/// Per MODEL, in file order: the terms it carries, by result field name. Empty for Vina
/// 1.1.2 output (no terms) and for a file whose MODEL blocks do not pair up.
pub fn energy_terms(text: &str) -> Vec<Vec<(String, f64)>> {
    let mut models = Vec::new();
    let mut open: Option<Vec<(String, f64)>> = None;
    for raw in text.lines() {
        let line = raw.trim_end();
        if line.starts_with("MODEL") {
            if open.is_some() {
                return Vec::new();
            }
            open = Some(Vec::new());
        } else if line.starts_with("ENDMDL") {
            match open.take() {
                Some(terms) => models.push(terms),
                None => return Vec::new(),
            }
        } else if let (Some(terms), Some(term)) = (open.as_mut(), term(line)) {
            if !terms.iter().any(|(name, _)| *name == term.0) {
                terms.push(term);
            }
        }
    }
    if open.is_some() {
        return Vec::new();
    }
    models
}

/// One `REMARK <TERM>: <value>` line, as a field; `None` for any other line or a value
/// that is not a finite number.
fn term(line: &str) -> Option<(String, f64)> {
    let rest = line.strip_prefix("REMARK")?.trim_start();
    // "INTER + INTRA:" before "INTER:", which is not its prefix but reads like one.
    const TERMS: [(&str, &str); 4] = [
        ("INTER + INTRA:", "vina_inter_intra"),
        ("INTER:", "vina_inter"),
        ("INTRA:", "vina_intra"),
        ("UNBOUND:", "vina_unbound"),
    ];
    TERMS.iter().find_map(|(label, field)| {
        let value: f64 = rest.strip_prefix(label)?.trim().parse().ok()?;
        value.is_finite().then(|| (field.to_string(), value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/engine-output-samples/vina-1.2.3_1iep_ex8_cpu1_seed1001.out.pdbqt"
    );

    fn field(terms: &[(String, f64)], name: &str) -> f64 {
        terms
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {name} in {terms:?}"))
    }

    /// Vina's own arithmetic, from its source (`weight_rot` 0.05846 for the vina scoring):
    /// the terms read here must give back the affinity Vina printed for every pose.
    #[test]
    fn the_terms_of_a_recorded_vina_output_give_back_its_affinities() {
        let text = std::fs::read_to_string(SAMPLE).expect("recorded sample in ../shared/data");
        let poses = dockyard_common::molecule::parse_vina_poses(&text).expect("poses");
        let torsdof: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("TORSDOF"))
            .and_then(|v| v.trim().parse().ok())
            .expect("TORSDOF");
        let terms = energy_terms(&text);
        assert_eq!(terms.len(), poses.len());
        assert!(poses.len() > 1, "the sample has several poses");
        for (pose, t) in poses.iter().zip(&terms) {
            assert_eq!(t.len(), 4, "{t:?}");
            let inter_intra = field(t, "vina_inter_intra");
            assert!(
                (inter_intra - field(t, "vina_inter") - field(t, "vina_intra")).abs() < 0.002,
                "{t:?}"
            );
            let affinity = (inter_intra - field(t, "vina_unbound")) / (1.0 + 0.05846 * torsdof);
            assert!(
                (affinity - pose.affinity).abs() < 0.002,
                "pose {}: {affinity} from {t:?}",
                pose.rank
            );
        }
    }

    #[test]
    fn an_inflated_unbound_energy_is_kept_as_written() {
        // Vina 1.2.3's output for a generated fragment (frag-03217, 3 torsions).
        let text = "MODEL 1\nREMARK VINA RESULT:   -11.634      0.000      0.000\n\
                    REMARK INTER + INTRA:          -8.751\nREMARK INTER:                  -8.359\n\
                    REMARK INTRA:                  -0.392\nREMARK UNBOUND:                 4.923\n\
                    ROOT\nENDROOT\nTORSDOF 3\nENDMDL\n";
        let t = &energy_terms(text)[0];
        assert_eq!(field(t, "vina_unbound"), 4.923);
        assert_eq!(field(t, "vina_intra"), -0.392);
        assert_eq!(field(t, "vina_inter_intra"), -8.751);
    }

    #[test]
    fn output_without_terms_or_with_broken_models_gives_none() {
        // Vina 1.1.2 writes only the result line.
        let old = "MODEL 1\nREMARK VINA RESULT:      -7.0      0.000      0.000\nENDMDL\n";
        assert_eq!(energy_terms(old), vec![Vec::new()]);
        assert!(energy_terms("MODEL 1\nREMARK INTER: -1.0\n").is_empty());
        assert!(energy_terms("MODEL 1\nMODEL 2\nENDMDL\n").is_empty());
        let bad = "MODEL 1\nREMARK INTER: nan\nREMARK INTRA: x\nENDMDL\n";
        assert_eq!(energy_terms(bad), vec![Vec::new()]);
    }
}
