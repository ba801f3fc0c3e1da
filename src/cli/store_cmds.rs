//! Store commands: ingest, templates, export, verify, gc, report.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use vzstore::store::catalog::{Backend, Catalog};
use vzstore::store::name::TemplateRef;
use vzstore::store::{self, Store};

use super::args::{Command, CompressionArg, FormatArg, TemplatesCmd};
use super::{open_for_write, output};
use vzstore::export;

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
        Command::Templates { cmd: None, json } => {
            let st = Store::open(root)?;
            let list = Catalog::open_read_only(&st)?.templates()?;
            if json {
                let out: Vec<_> = list.iter().map(output::template_json).collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                output::templates(&list);
            }
        }
        Command::Templates {
            cmd: Some(TemplatesCmd::Show { template, json }),
            ..
        } => {
            let st = Store::open(root)?;
            let db = Catalog::open_read_only(&st)?;
            let rec = db.resolve(&TemplateRef::parse(&template)?)?;
            let config = db.image_config(&rec.name, rec.version)?;
            let users = db
                .containers()?
                .into_iter()
                .filter(|c| c.template == rec.name && c.version == rec.version)
                .map(|c| c.name)
                .collect::<Vec<_>>();
            let mut v = output::template_json(&rec);
            v["image_config"] = serde_json::to_value(&config)?;
            v["containers"] = serde_json::to_value(&users)?;
            v["lazy_from"] = serde_json::to_value(db.lazy_remote(&rec.name, rec.version)?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                output::template_show(&v);
            }
        }
        Command::Templates {
            cmd: Some(TemplatesCmd::Rm { template, all }),
            ..
        } => {
            let st = open_for_write(root)?;
            let r = TemplateRef::parse(&template)?;
            for t in store::template::remove(&st, &r, all)? {
                println!("removed template {}", t.label());
            }
            println!("run `vzstore gc` to free objects nothing else uses");
        }
        Command::Export {
            args,
            container,
            format,
            tag,
            compression,
            json,
        } => {
            let st = Store::open(root)?;
            let (what_label, dest) = match (&container, args.as_slice()) {
                (Some(ct), [dest]) => (format!("container {ct}"), dest.clone()),
                (None, [t, dest]) => (t.clone(), dest.clone()),
                (Some(_), _) => anyhow::bail!("with --container, give only the destination"),
                (None, _) => anyhow::bail!("give the template (NAME[@V]) and the destination"),
            };
            if !matches!(format, FormatArg::Oci) && (tag.is_some() || compression.is_some()) {
                anyhow::bail!("--tag and --compression apply to --format oci only");
            }
            if let Some(t) = &tag {
                export::oci::check_tag(t)?;
            }
            let dest = if dest == "-" {
                export::Dest::Stdout
            } else {
                export::Dest::Path(dest.into())
            };
            let opts = export::Options {
                format: match format {
                    FormatArg::Dir => export::Format::Dir,
                    FormatArg::Tar => export::Format::Tar,
                    FormatArg::Oci => export::Format::Oci,
                },
                tag,
                compression: match compression.unwrap_or(CompressionArg::Gzip) {
                    CompressionArg::None => export::LayerCompression::None,
                    CompressionArg::Gzip => export::LayerCompression::Gzip,
                    CompressionArg::Zstd => export::LayerCompression::Zstd,
                },
            };
            let mounted = |rec: &vzstore::store::catalog::ContainerRecord| {
                vzstore::mount::is_served(&st, rec)
            };
            let what = match &container {
                Some(ct) => export::What::Container(ct, &mounted),
                None => export::What::Template(TemplateRef::parse(&args[0])?),
            };
            let sum = export::export(&st, what, &dest, &opts)
                .with_context(|| format!("export of {what_label} failed"))?;
            // The archive went to standard output: the summary goes elsewhere.
            let to_stdout = matches!(dest, export::Dest::Stdout);
            let line = if json {
                serde_json::to_string_pretty(&sum)?
            } else {
                format!(
                    "exported {}: {} entries, {}, {} written, {:.2} s",
                    sum.label,
                    sum.entries,
                    indicatif::HumanBytes(sum.bytes),
                    indicatif::HumanBytes(sum.written),
                    sum.seconds
                )
            };
            if to_stdout {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
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
        Command::Gc { json } => {
            let st = open_for_write(root)?;
            let sum = store::gc::gc(&st)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "objects_before": sum.objects_before,
                        "removed_objects": sum.removed_objects,
                        "removed_images": sum.removed_images,
                        "freed_bytes": sum.freed_bytes,
                        "dead_sessions": sum.dead_sessions,
                    }))?
                );
                return Ok(ExitCode::SUCCESS);
            }
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
