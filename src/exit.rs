//! The process exit status, defined once. `main` turns the outcome of a command
//! into one of these; the man page's EXIT STATUS section lists the same values.

use crate::error::Error;

/// What `picture-book` tells the calling shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: every listed image is at its target (or the config is valid, for `check`).
    Success,
    /// 1: at least one listed image is not at its target: a failed pull or push,
    /// a syncer script that failed or timed out, a line that is not an image
    /// reference, or docker that could not be run.
    Incomplete,
    /// 2: usage or configuration error; nothing was attempted.
    Usage,
}

impl ExitCode {
    /// The numeric status handed to the operating system.
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Incomplete => 1,
            ExitCode::Usage => 2,
        }
    }

    /// The status for a command that ended with `error`.
    pub fn of_error(error: &Error) -> ExitCode {
        if error.is_usage() {
            ExitCode::Usage
        } else {
            ExitCode::Incomplete
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn codes_are_the_documented_numbers() {
        assert_eq!(ExitCode::Success.code(), 0);
        assert_eq!(ExitCode::Incomplete.code(), 1);
        assert_eq!(ExitCode::Usage.code(), 2);
    }

    #[test]
    fn usage_and_config_errors_exit_2() {
        let usage = Error::Usage("unexpected argument 'x'".into());
        assert_eq!(ExitCode::of_error(&usage), ExitCode::Usage);
        let invalid = Error::ConfigInvalid {
            path: PathBuf::from("c.yaml"),
            problems: vec!["registries[0].hostname: must not be empty".into()],
        };
        assert_eq!(ExitCode::of_error(&invalid), ExitCode::Usage);
        let missing = Error::ConfigNotFound {
            searched: vec![PathBuf::from("/etc/picture-book/config.yaml")],
        };
        assert_eq!(ExitCode::of_error(&missing), ExitCode::Usage);
    }

    #[test]
    fn docker_trouble_exits_1() {
        let gone = Error::ToolNotFound {
            program: "docker".into(),
        };
        assert_eq!(ExitCode::of_error(&gone), ExitCode::Incomplete);
    }
}
