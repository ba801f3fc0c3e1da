//! The `vzstore` binary: parse the command line, run one command, print. All the
//! work is in the library; errors become one message and exit 1.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    // A daemon's log is its stderr (a file): bounded, whatever the requests.
    let daemon = std::env::args().any(|a| a == "--foreground");
    // Commands that talk to a remote keep SIGPIPE ignored: a connection the
    // server drops must be an error that is retried or reported, not a
    // silent death (vectored socket writes raise it).
    let remote = matches!(subcommand().as_deref(), Some("push" | "pull" | "remote"));
    if !daemon && !remote {
        vzstore::store::restore_default_sigpipe();
    }
    let mut log =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"));
    if daemon {
        log.target(env_logger::Target::Pipe(Box::new(
            vzstore::daemon::CappedLog::new(),
        )));
    }
    log.init();
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vzstore: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The subcommand word of the command line (the first argument that is not
/// an option, skipping the value of `--store`).
fn subcommand() -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--store" {
            args.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}
