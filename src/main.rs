//! The `vzstore` binary: parse the command line, run one command, print. All the
//! work is in the library (`vzstore::store`); errors become one message and exit 1.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vzstore: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
