//! Command-line interface: flags are defined in [`args`], each command's printing
//! lives here. Nothing here does store work itself.

mod args;
mod output;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use vzstore::store::meta::MetaDb;
use vzstore::store::name::TemplateRef;
use vzstore::store::{self, Store};

use args::{Args, Command, TemplatesCmd};

/// Parse arguments and run the command.
pub fn run() -> Result<ExitCode> {
    let args = Args::parse();
    let root = args.store.clone();
    match args.command {
        Command::Init => {
            Store::init(&root)?;
            println!("store ready at {}", root.display());
        }
        Command::Ingest { src, name } => {
            let st = Store::open(&root)?;
            let bar = output::IngestBar::new();
            let sum = store::ingest::ingest(&st, &src, &name, &bar).with_context(|| {
                format!("ingest of {} failed; the store is unchanged", src.display())
            })?;
            bar.finish();
            for w in &sum.warnings {
                eprintln!("vzstore: warning: {w}");
            }
            println!("{}", output::ingest_summary(&sum));
        }
        Command::Templates { cmd: None } => {
            let st = Store::open(&root)?;
            output::templates(&MetaDb::open(&st)?.templates()?);
        }
        Command::Templates {
            cmd: Some(TemplatesCmd::Rm { template, all }),
        } => {
            let st = Store::open(&root)?;
            let r = TemplateRef::parse(&template)?;
            for t in store::template::remove(&st, &r, all)? {
                println!("removed template {}", t.label());
            }
            println!("run `vzstore gc` to free objects nothing else uses");
        }
        Command::Export { template, dest } => {
            let st = Store::open(&root)?;
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
        Command::Verify => {
            let st = Store::open(&root)?;
            let rep = store::verify::verify(&st)?;
            output::verify(&rep);
            if !rep.is_clean() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Gc => {
            let st = Store::open(&root)?;
            let sum = store::gc::gc(&st)?;
            println!(
                "gc: removed {} of {} objects, freed {}{}",
                sum.removed_objects,
                sum.objects_before,
                indicatif::HumanBytes(sum.freed_bytes),
                if sum.dead_sessions > 0 {
                    format!(", cleaned {} crashed session(s)", sum.dead_sessions)
                } else {
                    String::new()
                }
            );
        }
        Command::Create { names, template } => {
            let st = Store::open(&root)?;
            let r = TemplateRef::parse(&template)?;
            for rec in store::container::create(&st, &names, &r)? {
                println!("created container {} from {}", rec.name, rec.base_label());
            }
        }
        Command::List => {
            let st = Store::open(&root)?;
            let list = MetaDb::open(&st)?.containers()?;
            output::containers(&st, &list)?;
        }
        Command::Destroy { name, force } => {
            let st = Store::open(&root)?;
            if force && store::container::is_mounted(&st, &name)? {
                vzstore::fs::daemon::umount(&st, &name)?;
            }
            store::container::destroy(&st, &name)?;
            println!("destroyed container {name}");
        }
        Command::Mount {
            name,
            mountpoint,
            foreground,
            no_passthrough,
        } => {
            let st = Store::open(&root)?;
            let opts = vzstore::fs::daemon::MountOptions {
                passthrough: !no_passthrough,
            };
            if foreground {
                vzstore::fs::daemon::serve(&st, &name, mountpoint.as_deref(), opts)?;
            } else {
                let mnt =
                    vzstore::fs::daemon::mount_background(&st, &name, mountpoint.as_deref(), opts)?;
                println!("mounted container {name} at {}", mnt.display());
            }
        }
        Command::Umount { name } => {
            let st = Store::open(&root)?;
            let mnt = vzstore::fs::daemon::umount(&st, &name)?;
            println!("unmounted container {name} from {}", mnt.display());
        }
        Command::Report { json } => {
            let st = Store::open(&root)?;
            let rep = store::report::report(&st)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rep)?);
            } else {
                output::report(&rep);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
