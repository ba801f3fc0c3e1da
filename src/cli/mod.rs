//! Command-line interface: flags are defined in [`args`], each command group
//! runs in its own file ([`store_cmds`], [`container_cmds`]), printing lives in
//! [`output`]. Nothing here does store work itself.

mod args;
mod container_cmds;
mod lifecycle_cmds;
mod output;
mod remote_cmds;
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
        | Command::Gc { .. }
        | Command::Report { .. }) => store_cmds::run(&root, c),
        Command::Completions { shell } => {
            let mut cmd = <Args as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "vzstore", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            man_pages(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reap => {
            // Background work: give way to the commands that started it.
            let _ = rustix::process::setpriority_process(None, 19);
            vzstore::store::reap::reap(&Store::open(&root)?)?;
            Ok(ExitCode::SUCCESS)
        }
        c @ (Command::Push { .. } | Command::Pull { .. } | Command::Remote { .. }) => {
            remote_cmds::run(&root, c)
        }
        c @ (Command::Rebase { .. } | Command::Commit { .. } | Command::Dedup { .. }) => {
            lifecycle_cmds::run(&root, c)
        }
        c => container_cmds::run(&root, c),
    }
}

/// Write `vzstore.1` and `vzstore-CMD.1` for each visible command.
fn man_pages(dir: &std::path::Path) -> Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let cmd = <Args as clap::CommandFactory>::command();
    let write = |name: String, c: clap::Command| -> Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(c).render(&mut out)?;
        std::fs::write(&path, out).with_context(|| path.display().to_string())?;
        Ok(())
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("vzstore-{}", sub.get_name());
        let page = sub
            .clone()
            .bin_name(name.clone())
            .display_name(name.clone());
        write(name, page)?;
    }
    write("vzstore".into(), cmd)?;
    Ok(())
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
