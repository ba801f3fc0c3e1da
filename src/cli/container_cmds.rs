//! Container commands: create, list, destroy, mount, umount.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use vzstore::mount::{self, MountOptions};
use vzstore::store::Store;
use vzstore::store::catalog::Catalog;
use vzstore::store::name::TemplateRef;

use super::args::Command;
use super::{open_for_write, output};

/// Run one container command.
pub fn run(root: &Path, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Create {
            names,
            template,
            backend,
        } => {
            let st = open_for_write(root)?;
            let r = TemplateRef::parse(&template)?;
            for rec in vzstore::container::create(&st, &names, &r, backend.into())? {
                println!(
                    "created container {} from {} ({})",
                    rec.name,
                    rec.base_label(),
                    rec.backend.name()
                );
            }
        }
        Command::List { json } => {
            let st = Store::open(root)?;
            let list = Catalog::open_read_only(&st)?.containers()?;
            output::containers(&st, &list, json)?;
        }
        Command::Destroy { name, force } => {
            let st = open_for_write(root)?;
            if force {
                let rec = mount::record(&st, &name)?;
                if mount::is_mounted(&st, &rec)? {
                    mount::umount(&st, &name)?;
                }
            }
            mount::destroy(&st, &name)?;
            println!("destroyed container {name}");
        }
        Command::Mount {
            name,
            mountpoint,
            foreground,
            no_passthrough,
        } => {
            let st = Store::open(root)?;
            let opts = MountOptions {
                passthrough: !no_passthrough,
            };
            if foreground {
                let lazy = super::remote_cmds::lazy_source_for(&st, &name)?;
                mount::fuse::serve::serve(&st, &name, mountpoint.as_deref(), opts, lazy)?;
            } else {
                let mnt = mount::mount(&st, &name, mountpoint.as_deref(), opts)?;
                println!("mounted container {name} at {}", mnt.display());
            }
        }
        Command::Umount { name } => {
            let st = Store::open(root)?;
            let mnt = mount::umount(&st, &name)?;
            println!("unmounted container {name} from {}", mnt.display());
        }
        other => unreachable!("not a container command: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}
