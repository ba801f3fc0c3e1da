//! The `vzstore` binary: parse the command line, run one command, print. All the
//! work is in the library; errors become one message and exit 1.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    // A daemon's log is its stderr (a file): bounded, whatever the requests.
    let daemon = std::env::args().any(|a| a == "--foreground");
    if !daemon {
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
