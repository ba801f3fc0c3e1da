//! Fleet commands: push, pull, remote add/ls/rm/delete/gc.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::HumanBytes;
use vzstore::mount;
use vzstore::remote::container::{pull_container, push_container};
use vzstore::remote::pull::{Fetch, PullSummary, pull_template};
use vzstore::remote::push::{PushSummary, push_template};
use vzstore::remote::transfer::Moved;
use vzstore::remote::{self, Remote, gc, lazy::LazySource};
use vzstore::store::Store;
use vzstore::store::catalog::{Catalog, ContainerRecord};
use vzstore::store::fetch::ObjectSource;
use vzstore::store::name::TemplateRef;
use vzstore::store::records::RemoteRecord;

use super::args::{Command, RemoteCmd};
use super::open_for_write;
use super::output::IngestBar;

/// Run one fleet command.
pub fn run(root: &Path, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Push {
            args,
            container,
            json,
        } => {
            let st = open_for_write(root)?;
            let (what, remote_name) = split_args("push", &args, container.as_deref())?;
            let remote = Remote::open(&st, &remote_name)?;
            let bar = IngestBar::new();
            let mounted = |r: &ContainerRecord| mount::is_served(&st, r);
            let s = match (&container, what) {
                (Some(ct), _) => push_container(&st, &remote, ct, &mounted, &bar),
                (None, Some(t)) => push_template(&st, &remote, &TemplateRef::parse(&t)?, &bar),
                (None, None) => unreachable!("split_args gives a template"),
            };
            bar.finish();
            let s = s.context("push failed; nothing on the remote names what was not sent")?;
            print_push(&s, json)?;
        }
        Command::Pull {
            args,
            container,
            lazy,
            json,
        } => {
            let st = open_for_write(root)?;
            let (what, remote_name) = split_args("pull", &args, container.as_deref())?;
            let remote = Remote::open(&st, &remote_name)?;
            let fetch = if lazy { Fetch::Lazy } else { Fetch::All };
            let bar = IngestBar::new();
            let s = match (&container, what) {
                (Some(ct), _) => pull_container(&st, &remote, ct, fetch, &bar),
                (None, Some(t)) => {
                    pull_template(&st, &remote, &TemplateRef::parse(&t)?, fetch, &bar)
                }
                (None, None) => unreachable!("split_args gives a template"),
            };
            bar.finish();
            let s = s.context(
                "pull failed; nothing of it was recorded (objects already fetched and checked are kept for a rerun)",
            )?;
            print_pull(&s, json)?;
        }
        Command::Remote { cmd } => return remote_cmd(root, cmd),
        other => unreachable!("not a fleet command: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `NAME[@V] REMOTE`, or `REMOTE` with --container.
fn split_args(
    verb: &str,
    args: &[String],
    container: Option<&str>,
) -> Result<(Option<String>, String)> {
    match (container, args) {
        (Some(_), [remote]) => Ok((None, remote.clone())),
        (Some(_), _) => bail!("{verb} --container CT takes one more argument: the remote"),
        (None, [what, remote]) => Ok((Some(what.clone()), remote.clone())),
        (None, _) => bail!("{verb} takes NAME[@VERSION] and REMOTE (or --container CT REMOTE)"),
    }
}

fn moved_line(m: &Moved) -> String {
    format!(
        "{} objects ({}, {} on the wire), {} already there ({})",
        m.objects_moved,
        HumanBytes(m.bytes_moved),
        HumanBytes(m.wire_bytes),
        m.objects_skipped,
        HumanBytes(m.bytes_skipped)
    )
}

fn print_push(s: &PushSummary, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else if s.already_there {
        println!(
            "remote {} has {} already: nothing sent ({:.2} s)",
            s.remote, s.pushed, s.seconds
        );
    } else {
        println!(
            "pushed {} to {}: {}, {:.2} s",
            s.pushed,
            s.remote,
            moved_line(&s.moved),
            s.seconds
        );
    }
    Ok(())
}

fn print_pull(s: &PullSummary, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    for w in &s.warnings {
        eprintln!("vzstore: warning: {w}");
    }
    if s.already_there {
        println!(
            "this store has {} already: nothing fetched ({:.2} s)",
            s.pulled, s.seconds
        );
    } else if s.lazy {
        println!(
            "pulled {} from {} lazily: its files are fetched on first open by FUSE containers ({:.2} s)",
            s.pulled, s.remote, s.seconds
        );
    } else {
        println!(
            "pulled {} from {}: {}, {:.2} s",
            s.pulled,
            s.remote,
            moved_line(&s.moved),
            s.seconds
        );
    }
    Ok(())
}

/// Parse `30s`, `15m`, `1h`, `2d` (a bare number is seconds).
fn parse_age(s: &str) -> Result<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("--min-age {s:?}: expected a number and s, m, h or d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => bail!("--min-age {s:?}: the unit must be s, m, h or d"),
    };
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

fn remote_cmd(root: &Path, cmd: RemoteCmd) -> Result<ExitCode> {
    match cmd {
        RemoteCmd::Add {
            name,
            url,
            endpoint,
            region,
            credentials_file,
        } => {
            let st = open_for_write(root)?;
            let (bucket, prefix) = remote::parse_url(&url)?;
            let region = region
                .or_else(|| std::env::var("AWS_REGION").ok())
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                .unwrap_or_else(|| "us-east-1".into());
            let credentials_file = match credentials_file {
                Some(p) => Some(std::path::absolute(&p).with_context(|| p.display().to_string())?),
                None => None,
            };
            let rec = RemoteRecord {
                name,
                bucket,
                prefix,
                endpoint: endpoint.trim_end_matches('/').to_string(),
                region,
                credentials_file,
            };
            remote::add(&st, &rec)?;
            println!(
                "added remote {} ({} at {})",
                rec.name,
                rec.url(),
                rec.endpoint
            );
        }
        RemoteCmd::Ls { name: None, json } => {
            let st = Store::open(root)?;
            let all = remote::list(&st)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                println!(
                    "no remotes (add one with `vzstore remote add NAME s3://BUCKET --endpoint URL`)"
                );
            } else {
                println!("{:<16} {:<32} {:<28} REGION", "NAME", "URL", "ENDPOINT");
                for r in all {
                    println!(
                        "{:<16} {:<32} {:<28} {}",
                        r.name,
                        r.url(),
                        r.endpoint,
                        r.region
                    );
                }
            }
        }
        RemoteCmd::Ls {
            name: Some(name),
            json,
        } => {
            let st = Store::open(root)?;
            let remote = Remote::open(&st, &name)?;
            let l = remote::ls(&remote)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&l)?);
            } else {
                println!(
                    "{:<28} {:>8} {:>10} {:>10} {:<20} SOURCE",
                    "TEMPLATE", "ENTRIES", "SIZE", "OBJECTS", "PUSHED BY"
                );
                for t in &l.templates {
                    println!(
                        "{:<28} {:>8} {:>10} {:>10} {:<20} {}",
                        format!("{}@{}", t.name, t.version),
                        t.entries,
                        HumanBytes(t.logical_bytes).to_string(),
                        t.objects,
                        t.pushed_by,
                        t.source
                    );
                }
                for c in &l.containers {
                    println!(
                        "container {} on {}@{} ({}), pushed by {}",
                        c.name, c.template, c.version, c.backend, c.pushed_by
                    );
                }
                for e in &l.invalid {
                    println!("invalid: {e}");
                }
                println!(
                    "{} objects, {} stored on the remote",
                    l.objects,
                    HumanBytes(l.stored_bytes)
                );
            }
        }
        RemoteCmd::Rm { name } => {
            let st = open_for_write(root)?;
            remote::remove(&st, &name)?;
            println!("removed remote {name} (nothing on it was touched)");
        }
        RemoteCmd::Delete {
            remote: name,
            template,
            container,
        } => {
            let st = Store::open(root)?;
            let remote = Remote::open(&st, &name)?;
            match (template, container) {
                (Some(t), None) => {
                    let r = TemplateRef::parse(&t)?;
                    let Some(v) = r.version else {
                        bail!("remote delete needs NAME@VERSION (the version to delete)");
                    };
                    remote::delete_template(&remote, &r.name, v)?;
                    println!(
                        "deleted {}@{v} from {name}; `vzstore remote gc {name}` frees its objects",
                        r.name
                    );
                }
                (None, Some(ct)) => {
                    remote::delete_container(&remote, &ct)?;
                    println!("deleted container {ct} from {name}");
                }
                _ => bail!("remote delete takes NAME@VERSION or --container CT"),
            }
        }
        RemoteCmd::Gc {
            remote: name,
            min_age,
            dry_run,
            json,
        } => {
            let st = Store::open(root)?;
            let remote = Remote::open(&st, &name)?;
            let s = gc::gc(&remote, parse_age(&min_age)?, dry_run)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "remote gc of {}: {} documents name {} objects; {} {} unnamed objects ({}); {} younger than {min_age} kept; {} stale leases; {:.2} s",
                    s.remote,
                    s.documents,
                    s.live_objects,
                    if s.dry_run { "would remove" } else { "removed" },
                    s.removed_objects,
                    HumanBytes(s.removed_bytes),
                    s.young_objects,
                    s.stale_leases,
                    s.seconds
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a FUSE daemon of container `ct` fetches missing objects from: the
/// remote its base was pulled lazily from, if it was.
pub fn lazy_source_for(st: &Store, ct: &str) -> Result<Option<Arc<dyn ObjectSource>>> {
    let db = Catalog::open_read_only(st)?;
    let Some(rec) = db.container(ct)? else {
        return Ok(None);
    };
    let Some(name) = db.lazy_remote(&rec.template, rec.version)? else {
        return Ok(None);
    };
    drop(db);
    let remote = Remote::open(st, &name).with_context(|| {
        format!(
            "the base {} of {ct} was pulled lazily from {name}",
            rec.base_label()
        )
    })?;
    Ok(Some(Arc::new(LazySource::new(remote))))
}
