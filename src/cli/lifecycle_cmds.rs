//! Template lifecycle commands: rebase, commit, dedup.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use vzstore::lifecycle::{self, Run, rebase::RebaseOutcome};
use vzstore::mount;
use vzstore::store::catalog::{Catalog, ContainerRecord};
use vzstore::store::name::TemplateRef;

use super::args::Command;
use super::{open_for_write, output};

/// Run one lifecycle command.
pub fn run(root: &Path, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Rebase {
            names,
            to,
            from,
            dry_run,
            json,
        } => {
            let st = open_for_write(root)?;
            let to = TemplateRef::parse(&to)?;
            let mut cts = names;
            if let Some(from) = from {
                let f = TemplateRef::parse(&from)?;
                let db = Catalog::open_read_only(&st)?;
                let v = db.resolve(&f)?;
                for c in db.containers()? {
                    if c.template == v.name && c.version == v.version && !cts.contains(&c.name) {
                        cts.push(c.name);
                    }
                }
            }
            if cts.is_empty() {
                anyhow::bail!(
                    "no container to rebase: name containers or give --from NAME@VERSION"
                );
            }
            let mounted = |r: &ContainerRecord| mount::is_served(&st, r);
            let mut done: Vec<RebaseOutcome> = Vec::new();
            let mut failed = 0;
            let results = lifecycle::rebase::rebase(
                &st,
                &cts,
                &to,
                run_mode(dry_run),
                &mounted,
                &HashMap::new(),
            )
            .context("rebase failed; no container was moved")?;
            for (ct, r) in results {
                match r {
                    Ok(o) => {
                        if !json {
                            output::rebase(&o);
                        }
                        done.push(o);
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("vzstore: rebase of {ct} failed, it is unchanged: {e}");
                    }
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            }
            if failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Commit {
            container,
            name,
            rebase,
            json,
        } => {
            let st = open_for_write(root)?;
            let mounted = |r: &ContainerRecord| mount::is_served(&st, r);
            let bar = output::IngestBar::new();
            let (sum, hashed) = lifecycle::commit::commit(&st, &container, &name, &bar, &mounted)
                .with_context(|| {
                format!("commit of container {container} failed; the store is unchanged")
            })?;
            bar.finish();
            for w in &sum.warnings {
                eprintln!("vzstore: warning: {w}");
            }
            let moved = if rebase {
                let to = TemplateRef {
                    name: sum.record.name.clone(),
                    version: Some(sum.record.version),
                };
                let moved = lifecycle::rebase::rebase(
                    &st,
                    std::slice::from_ref(&container),
                    &to,
                    Run::Apply,
                    &mounted,
                    &hashed,
                )
                .and_then(|mut r| match r.pop() {
                    Some((_, o)) => o,
                    None => Err(vzstore::store::Error::ContainerNotFound(container.clone())),
                })
                .with_context(|| {
                    format!(
                        "{} was committed, but moving container {container} onto it failed (the container is unchanged)",
                        sum.record.label()
                    )
                })?;
                Some(moved)
            } else {
                None
            };
            if json {
                let v = serde_json::json!({
                    "template": sum.record.label(),
                    "entries": sum.entries,
                    "files": sum.files,
                    "bytes": sum.bytes,
                    "new_objects": sum.new_objects,
                    "new_bytes": sum.new_bytes,
                    "seconds": sum.seconds,
                    "rebase": moved,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "committed container {container} as {}",
                    output::ingest_summary(&sum).trim_start_matches("ingested ")
                );
                if let Some(o) = &moved {
                    output::rebase(o);
                }
            }
        }
        Command::Dedup {
            names,
            dry_run,
            json,
        } => {
            let st = open_for_write(root)?;
            let mounted = |r: &ContainerRecord| mount::is_served(&st, r);
            let mut seen = std::collections::HashSet::new();
            let names: Vec<String> = names
                .into_iter()
                .filter(|c| seen.insert(c.clone()))
                .collect();
            let sum = lifecycle::dedup::dedup(&st, &names, run_mode(dry_run), &mounted)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&sum)?);
            } else {
                output::dedup(&sum, dry_run);
            }
        }
        other => unreachable!("not a lifecycle command: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `--dry-run` as the library takes it.
fn run_mode(dry_run: bool) -> Run {
    if dry_run { Run::DryRun } else { Run::Apply }
}
