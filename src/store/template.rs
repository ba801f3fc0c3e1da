//! Operations on templates as a whole (ingest and export have their own modules).

use crate::store::Store;
use crate::store::catalog::{Catalog, TemplateRecord};
use crate::store::error::{Error, Result};
use crate::store::image;
use crate::store::name::TemplateRef;

/// Remove template versions, all in one database batch, under one database open
/// (so no container can be created on them meanwhile). `NAME@V` removes that
/// version; `NAME` removes the only version, or every version with `all`.
/// Refuses versions that containers use. Their kernel images are removed;
/// their objects become garbage for `gc` unless something else uses them.
pub fn remove(store: &Store, r: &TemplateRef, all: bool) -> Result<Vec<TemplateRecord>> {
    let db = Catalog::open(store)?;
    let targets = match r.version {
        Some(_) => vec![db.resolve(r)?],
        None => {
            let versions = db.versions(&r.name)?;
            if versions.is_empty() {
                return Err(Error::TemplateNotFound(r.name.clone()));
            }
            if versions.len() > 1 && !all {
                let labels: Vec<_> = versions.iter().map(|t| t.label()).collect();
                return Err(Error::AmbiguousTemplate {
                    name: r.name.clone(),
                    count: labels.len(),
                    versions: labels.join(", "),
                });
            }
            versions
        }
    };
    let containers = db.containers()?;
    for t in &targets {
        let users: Vec<&str> = containers
            .iter()
            .filter(|c| c.template == t.name && c.version == t.version)
            .map(|c| c.name.as_str())
            .collect();
        if !users.is_empty() {
            return Err(Error::TemplateInUse {
                template: t.label(),
                containers: users.join(", "),
            });
        }
    }
    db.remove_templates(&targets)?;
    // Their kernel images, unless another version has the same tree. A crash
    // before this leaves them for gc.
    let wanted = image::wanted(store, &db)?;
    drop(db);
    image::remove_unused(store, &wanted, std::time::SystemTime::now())?;
    Ok(targets)
}
