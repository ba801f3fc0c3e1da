//! Store commands: ingest, templates, export, verify, gc, report.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use vzstore::store::catalog::{Backend, Catalog};
use vzstore::store::name::TemplateRef;
use vzstore::store::{self, Store};

use super::args::{Command, TemplatesCmd};
use super::{open_for_write, output};

/// Run one store command.
pub fn run(root: &Path, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Ingest {
            src,
            name,
            consume,
            json,
        } => {
            let st = open_for_write(root)?;
            let bar = output::IngestBar::new();
            let sum = vzstore::ingest::source::open(&st, &src, consume)
                .and_then(|mut source| vzstore::ingest::ingest(&st, source.as_mut(), &name, &bar))
                .with_context(|| format!("ingest of {src} failed; the store is unchanged"))?;
            bar.finish();
            for w in &sum.warnings {
                eprintln!("vzstore: warning: {w}");
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&output::ingest_json(&sum))?
                );
            } else {
                println!("{}", output::ingest_summary(&sum));
            }
        }
        Command::Templates { cmd: None } => {
            let st = Store::open(root)?;
            output::templates(&Catalog::open_read_only(&st)?.templates()?);
        }
        Command::Templates {
            cmd: Some(TemplatesCmd::Rm { template, all }),
        } => {
            let st = open_for_write(root)?;
            let r = TemplateRef::parse(&template)?;
            for t in store::template::remove(&st, &r, all)? {
                println!("removed template {}", t.label());
            }
            println!("run `vzstore gc` to free objects nothing else uses");
        }
        Command::Export { template, dest } => {
            let st = Store::open(root)?;
            let r = TemplateRef::parse(&template)?;
            let sum = store::export::export(&st, &r, &dest)
                .with_context(|| format!("export of {template} to {} failed", dest.display()))?;
            println!(
                "exported {}: {} entries, {} to {}",
                sum.label,
                sum.entries,
                indicatif::HumanBytes(sum.bytes),
                dest.display()
            );
        }
        Command::Verify { json, repair } => {
            let st = match repair {
                None => Store::open(root)?,
                Some(_) => open_for_write(root)?,
            };
            let mut rep = store::verify::verify(&st)?;
            if let Some(sources) = &repair {
                store::verify::repair(&st, &mut rep, sources)?;
            }
            // A mounted kernel container keeps reading the image it mounted.
            for b in &rep.bad_images {
                for ct in &b.containers {
                    let rec = vzstore::mount::record(&st, ct)?;
                    if vzstore::mount::is_mounted(&st, &rec)? {
                        rep.stale_mounts.push(ct.clone());
                    }
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rep)?);
            } else {
                if let Some(fixed) = &rep.repair {
                    output::repair(fixed);
                }
                output::verify(&rep);
            }
            if !rep.is_clean() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Gc => {
            let st = open_for_write(root)?;
            let sum = store::gc::gc(&st)?;
            println!(
                "gc: removed {} of {} objects{}, freed {}{}",
                sum.removed_objects,
                sum.objects_before,
                if sum.removed_images > 0 {
                    format!(" and {} unused kernel image(s)", sum.removed_images)
                } else {
                    String::new()
                },
                indicatif::HumanBytes(sum.freed_bytes),
                if sum.dead_sessions > 0 {
                    format!(", cleaned {} crashed session(s)", sum.dead_sessions)
                } else {
                    String::new()
                }
            );
        }
        Command::Report { json } => {
            let st = Store::open(root)?;
            let mut rep = store::report::report(&st, &|rec, base, dir| {
                use vzstore::container::{upper_view, view};
                let v = match rec.backend {
                    Backend::Fuse => view::fuse_view(base.clone(), dir)?,
                    Backend::Kernel => upper_view::view(&base, dir)?,
                };
                Ok(view::usage(&v, &base))
            })?;
            rep.store.dedup_would_free = vzstore::lifecycle::dedup::would_free(&st)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rep)?);
            } else {
                output::report(&rep);
            }
        }
        other => unreachable!("not a store command: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}
