//! Command-line interface: flags are defined in [`args`], each command group
//! runs in its own file ([`store_cmds`], [`container_cmds`]), printing lives in
//! [`output`]. Nothing here does store work itself.

mod args;
mod container_cmds;
mod lifecycle_cmds;
mod output;
mod store_cmds;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use vzstore::store::Store;

use args::{Args, Command};

/// Parse arguments and run the command.
pub fn run() -> Result<ExitCode> {
    let args = Args::parse();
    let root = args.store.clone();
    match args.command {
        Command::Init => {
            Store::init(&root)?;
            println!("store ready at {}", root.display());
            Ok(ExitCode::SUCCESS)
        }
        c @ (Command::Ingest { .. }
        | Command::Templates { .. }
        | Command::Export { .. }
        | Command::Verify { .. }
        | Command::Gc
        | Command::Report { .. }) => store_cmds::run(&root, c),
        Command::Reap => {
            // Background work: give way to the commands that started it.
            let _ = rustix::process::setpriority_process(None, 19);
            vzstore::store::reap::reap(&Store::open(&root)?)?;
            Ok(ExitCode::SUCCESS)
        }
        c @ (Command::Rebase { .. } | Command::Commit { .. } | Command::Dedup { .. }) => {
            lifecycle_cmds::run(&root, c)
        }
        c => container_cmds::run(&root, c),
    }
}

/// Open the store for a command that writes to it: stores made by earlier
/// versions get this version's permissions first, with a line saying so.
fn open_for_write(root: &std::path::Path) -> Result<Store> {
    let st = Store::open(root)?;
    for p in st.tighten()? {
        eprintln!(
            "vzstore: tightened the permissions of {} (other users may no longer read it)",
            p.display()
        );
    }
    Ok(st)
}
