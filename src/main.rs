//! The `picture-book` binary: parse the command line, set up logging, run the
//! command in the library, and turn its outcome into the exit status.

use picture_book::cli::{self, Command};
use picture_book::{display, exit::ExitCode};

fn main() -> std::process::ExitCode {
    let cli = match cli::parse(std::env::args_os().skip(1).collect()) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("picture-book: {e}");
            return ExitCode::of_error(&e).into();
        }
    };
    display::init_logging(cli.verbosity, cli.command == Command::Sync);
    match picture_book::run(&cli) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("picture-book: {e}");
            ExitCode::of_error(&e).into()
        }
    }
}
