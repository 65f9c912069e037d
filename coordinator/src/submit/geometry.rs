//! The search box: given, or computed from a reference ligand; checked against the receptor.

use std::path::Path;

use dockyard_common::artifact::ArtifactStore;
use dockyard_common::error::DockyardError;
use dockyard_common::ids::OrgId;
use dockyard_common::molecule::coords::{atom_coords, atoms_in_box, autobox};
use dockyard_common::molecule::LibraryFormat;
use dockyard_common::spec::DockBox;
use dockyard_proto::v1 as pb;

use super::{check_whole_file_size, display_name, materialise, SubmitLimits};
use crate::api::convert::dock_box;

/// smina's default `--autobox_add`.
const DEFAULT_AUTOBOX_ADD: f64 = 4.0;
/// A box is "on the receptor" when a receptor atom lies within this margin of it.
const NEAR_MARGIN: f64 = 4.0;

pub async fn resolve_box(
    req: &pb::SubmitJobRequest,
    receptor: &[[f64; 3]],
    org: &OrgId,
    store: &dyn ArtifactStore,
    dir: &Path,
    limits: &SubmitLimits,
) -> Result<DockBox, DockyardError> {
    let (b, field) = match &req.autobox_ligand {
        Some(f) => {
            if req.r#box.is_some() {
                return Err(DockyardError::invalid(
                    "autobox_ligand",
                    "give either a box or an autobox ligand, not both",
                ));
            }
            let add = if req.autobox_add == 0.0 {
                DEFAULT_AUTOBOX_ADD
            } else {
                req.autobox_add
            };
            if !(0.0..=30.0).contains(&add) {
                return Err(DockyardError::invalid("autobox_add", format!("{add} must be 0-30 Å")));
            }
            let name = display_name(&f.name);
            let format = LibraryFormat::from_name(&name)
                .ok_or_else(|| DockyardError::invalid("autobox_ligand", format!("'{name}': unknown format")))?;
            check_whole_file_size("autobox_ligand", f, org, store, limits).await?;
            let path = materialise("autobox_ligand", f, org, store, dir).await?;
            let text = tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| DockyardError::invalid("autobox_ligand", format!("'{name}': {e}")))?;
            let coords = atom_coords(&text, format);
            let (center, size) = autobox(&coords, add)
                .ok_or_else(|| DockyardError::invalid("autobox_ligand", format!("'{name}' has no 3D atom coordinates")))?;
            let b = DockBox { center, size };
            b.validate()
                .map_err(|e| DockyardError::invalid("autobox_ligand", format!("the computed box is unusable: {e}")))?;
            (b, "autobox_ligand")
        }
        None => (dock_box(req.r#box.as_ref())?, "box"),
    };
    if !receptor.is_empty() && atoms_in_box(receptor, b.center, b.size, NEAR_MARGIN) == 0 {
        return Err(DockyardError::invalid(
            field,
            format!(
                "the box centred at ({:.2}, {:.2}, {:.2}) does not touch the receptor: no receptor atom within {NEAR_MARGIN} Å of it",
                b.center[0], b.center[1], b.center[2]
            ),
        ));
    }
    Ok(b)
}
