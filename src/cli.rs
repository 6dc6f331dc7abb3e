//! The command line, in two steps: every flag is read with pico-args into
//! raw `Flags`, which are then checked against the command into a [`Cli`],
//! the only form the rest of the program sees. Anything not understood is an
//! error, never ignored. Help texts live here too.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::display::Verbosity;
use crate::error::Error;
use crate::selection::rules::{RuleText, Rules};

/// The program's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// From `-q` and `-v`.
    pub verbosity: Verbosity,
    /// `--state-dir DIR`.
    pub state_dir: Option<PathBuf>,
    /// What to do.
    pub command: Command,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Mirror once.
    Load(LoadOptions),
    /// Write what the syncer scripts list into an OCI image layout.
    Export(ExportOptions),
    /// Validate the configuration and show the schedules.
    Check,
    /// List a repository's tags and choose among them.
    Tags(TagsOptions),
    /// The continuous daemon.
    Sync,
    /// Print this help text and exit 0.
    Help(&'static str),
    /// Print the version and exit 0.
    Version,
}

/// Which registries `load` mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// `--registry HOST`.
    One(String),
    /// `--all`.
    All,
}

/// Options of `load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Which registries.
    pub selection: Selection,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--json`.
    pub json: bool,
    /// `--force`.
    pub force: bool,
    /// `--wait`: how long to wait for another process's run of a registry.
    pub wait: Duration,
    /// `--from DIR|FILE.tar`: the layout to load instead of the sources.
    pub from: Option<PathBuf>,
}

/// Options of `export`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// Which registries' images.
    pub selection: Selection,
    /// Where to.
    pub into: ExportTo,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--json`.
    pub json: bool,
}

/// Options of `tags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagsOptions {
    /// The repository (`docker.io/library/nginx`).
    pub repository: String,
    /// The selection rules.
    pub rules: RuleText,
    /// `--registry HOST`: whose `pullAuthConfig` to use.
    pub registry: Option<String>,
    /// `--json`.
    pub json: bool,
}

/// Where `export` writes its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTo {
    /// `DIR`: a directory, added to when it holds an earlier export.
    Dir(PathBuf),
    /// `--archive FILE.tar`: one tar file, written whole.
    Archive(PathBuf),
}

/// How long `load` waits for another process's run of a registry when
/// `--wait` is not given: as long as one image may take to move
/// (`transferTimeout`'s default).
pub const DEFAULT_WAIT: Duration = crate::config::DEFAULT_TRANSFER_TIMEOUT;

const MAIN_HELP: &str = "\
picture-book: mirror container images into container registries

Usage: picture-book [OPTIONS] <COMMAND>

Commands:
  load    Mirror the images each syncer script lists, once
  export  Write the images each syncer script lists into an OCI layout
  check   Validate the configuration and show the next scheduled runs
  tags    List a repository's tags and choose among them (for scripts)
  sync    Run the synchronization daemon

Options:
  -c, --config <FILE>  Configuration file [default: $PICTURE_BOOK_CONFIG,
                       else ./config.yaml, else /etc/picture-book/config.yaml]
      --state-dir <DIR>
                       Where to remember what was mirrored [default: stateDir,
                       else /var/lib/picture-book for root, else
                       $XDG_STATE_HOME/picture-book]
  -v, --verbose        Log more (each command run); repeat for more
  -q, --quiet          Log only warnings and errors
  -h, --help           Print help (also after a command)
  -V, --version        Print version

Exit status: 0 every listed image is at its target; 1 at least one is not;
2 usage or configuration error, nothing attempted.

See picture-book(1) and picture-book.yaml(5).
";

const LOAD_HELP: &str = "\
Mirror the images each syncer script lists, once: pull, tag and push each.

Usage: picture-book load [OPTIONS] (--registry <HOST> | --all)

Options:
  -r, --registry <HOST>  Mirror into the configured registry HOST
  -a, --all              Mirror into every configured registry, in turn
  -n, --dry-run          Run the syncer scripts and print the plan: each source,
                         its target, and whether it is up to date and why;
                         pull and push nothing
  -f, --force            Mirror every image, even those already up to date
  -w, --wait <DURATION>  How long to wait while another picture-book runs a
                         registry (90s, 10m, 1h; 0: not at all) [default: 30m]
      --from <PATH>      Push the images of an OCI layout (a directory or a
                         tar archive, from 'export' or another tool) instead
                         of what the syncer script lists
      --json             Print a machine-readable report on stdout (logs stay
                         on stderr)
  -c, --config <FILE>    Configuration file
      --state-dir <DIR>  Where to remember what was mirrored
  -v, --verbose          Log more; repeat for more
  -q, --quiet            Log only warnings and errors; print the summary only
                         when something failed
  -h, --help             Print help

Exit status: 0 every listed image is at its target; 1 at least one is not
(a failed pull or push, a failed or hung syncer script, a line that is not an
image reference, docker unavailable); 2 usage or configuration error.
";

const TAGS_HELP: &str = "\
List a repository's tags and print the ones the rules choose, one reference
per line, as a syncer script prints them: highest version first, then the
tags that are not versions, by name.

Usage: picture-book tags [OPTIONS] <REPOSITORY> (RULES... | --all-tags)

Rules (applied in this order):
      --match <PATTERN>    Keep the tags that match PATTERN (a regular
                           expression, not anchored: write ^ and $)
      --exclude <PATTERN>  Drop the tags that match PATTERN; repeatable
      --semver <RANGE>     Keep the tags that read as versions in RANGE
                           ('>=1.25, <2'; a leading v and 1.25 count;
                           pre-releases only when RANGE names one)
      --latest <N>         Keep the N highest versions that remain
      --all-tags           Keep every tag (no other rule)

Options:
  -r, --registry <HOST>  Use the pullAuthConfig of the configured registry
                         HOST [default: $PICTURE_BOOK_REGISTRY]
      --json             Print every tag with the rule that kept or dropped it
  -c, --config <FILE>    Configuration file
  -v, --verbose          Log more; repeat for more
  -q, --quiet            Log only warnings and errors
  -h, --help             Print help

Exit status: 0 the selection was printed; 1 the repository cannot be
listed; 2 usage or configuration error.
";

const CHECK_HELP: &str = "\
Validate the configuration and print, for each registry, its hostname, its
engine and its next three scheduled runs (RFC 3339, local time; TZ is
honoured).

Usage: picture-book check [OPTIONS]

Options:
  -c, --config <FILE>  Configuration file
  -v, --verbose        Log more; repeat for more
  -q, --quiet          Log only warnings and errors
  -h, --help           Print help

Exit status: 0 the configuration is valid; 2 it is not (each problem is
listed).
";

const SYNC_HELP: &str = "\
Run the synchronization daemon: mirror each registry on its syncPeriod, one
thread per registry, and serve the HTTP API when api.enabled is true.

Usage: picture-book sync [OPTIONS]

Options:
  -c, --config <FILE>  Configuration file
      --state-dir <DIR>
                       Where to remember what was mirrored
  -v, --verbose        Log more; repeat for more
  -q, --quiet          Log only warnings and errors
  -h, --help           Print help

Signals: SIGHUP re-reads the configuration (a broken one is logged and the
running one kept); SIGTERM or SIGINT stop after the images in progress.

API: /list?type=configured|active, /ops?sync=HOST&action=details|pause|
resume|run|schedule&period=CRON, /healthz, /metrics (see picture-book(1)).

Exit status: 0 after SIGTERM or SIGINT; 2 configuration error; 1 otherwise.
";

const EXPORT_HELP: &str = "\
Write the images each syncer script lists into an OCI image layout, for a
disconnected site: 'load --from' pushes them there. Indexes stay whole,
digests unchanged; platforms and referrers apply as for the native engine.

Usage: picture-book export [OPTIONS] (--registry <HOST> | --all)
                           (<DIR> | --archive <FILE.tar>)

Arguments:
  <DIR>                  The layout's directory; an earlier export there is
                         added to (only missing blobs are written) and its
                         index.json replaced at the end

Options:
  -r, --registry <HOST>  Export the images of the configured registry HOST
  -a, --all              Export the images of every configured registry
      --archive <FILE>   Write the layout as one tar file instead, under a
                         temporary name renamed when complete
  -n, --dry-run          Run the syncer scripts and print what would be
                         written; write nothing
      --json             Print a machine-readable report on stdout
  -c, --config <FILE>    Configuration file
  -v, --verbose          Log more; repeat for more
  -q, --quiet            Log only warnings and errors; print the summary only
                         when something failed
  -h, --help             Print help

Exit status: 0 every listed image is in the layout; 1 at least one is not;
2 usage or configuration error.
";

/// Every help text.
pub const HELP_TEXTS: [&str; 6] = [
    MAIN_HELP,
    LOAD_HELP,
    EXPORT_HELP,
    CHECK_HELP,
    SYNC_HELP,
    TAGS_HELP,
];

/// Parses the arguments after the program name: the raw [`Flags`] first,
/// then the command they make.
pub fn parse(args: Vec<OsString>) -> Result<Cli, Error> {
    let mut flags = Flags::read(args)?;
    let verbosity = verbosity(flags.quiet, flags.verbose)?;
    let (config, state_dir) = (flags.config.take(), flags.state_dir.take());
    Ok(Cli {
        config,
        verbosity,
        state_dir,
        command: flags.command()?,
    })
}

/// Every flag as given, read in one go: values first (a malformed one is an
/// error at once), then switches, the command and its free argument. Which
/// flags the command accepts is checked after, in [`Flags::command`].
struct Flags {
    config: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    registry: Option<String>,
    wait: Option<Duration>,
    from: Option<PathBuf>,
    archive: Option<PathBuf>,
    help: bool,
    version: bool,
    all: bool,
    dry_run: bool,
    json: bool,
    force: bool,
    quiet: bool,
    verbose: u32,
    /// The first free argument.
    command: Option<String>,
    /// `help`'s free argument: the command to help with.
    topic: Option<String>,
    /// `export`'s free argument: the layout's directory.
    dir: Option<PathBuf>,
    /// `tags`' free argument: the repository.
    repository: Option<String>,
    /// `tags`' rules.
    rules: RuleText,
}

fn usage(e: pico_args::Error) -> Error {
    Error::Usage(e.to_string())
}

impl Flags {
    /// Reads `args`; anything left over is an error.
    fn read(args: Vec<OsString>) -> Result<Flags, Error> {
        let mut args = pico_args::Arguments::from_vec(args);
        let config = args.opt_value_from_str(["-c", "--config"]).map_err(usage)?;
        let state_dir = args.opt_value_from_str("--state-dir").map_err(usage)?;
        let registry: Option<String> = args
            .opt_value_from_str(["-r", "--registry"])
            .map_err(usage)?;
        let wait: Option<String> = args.opt_value_from_str(["-w", "--wait"]).map_err(usage)?;
        let from = args.opt_value_from_str("--from").map_err(usage)?;
        let archive = args.opt_value_from_str("--archive").map_err(usage)?;
        let wait = wait.as_deref().map(parse_wait).transpose()?;
        let rules = rule_text(&mut args)?;
        if let Some(host) = registry
            .as_deref()
            .filter(|h| h.starts_with('-') || h.is_empty())
        {
            return Err(Error::Usage(format!(
                "--registry needs a hostname, not '{host}'"
            )));
        }
        let mut flags = Flags {
            config,
            state_dir,
            registry,
            wait,
            from,
            archive,
            help: args.contains(["-h", "--help"]),
            version: args.contains(["-V", "--version"]),
            all: args.contains(["-a", "--all"]),
            dry_run: args.contains(["-n", "--dry-run"]),
            json: args.contains("--json"),
            force: args.contains(["-f", "--force"]),
            quiet: args.contains(["-q", "--quiet"]),
            verbose: 0,
            command: None,
            topic: None,
            dir: None,
            repository: None,
            rules,
        };
        while args.contains(["-v", "--verbose"]) {
            flags.verbose += 1;
        }
        flags.command = args.subcommand().map_err(usage)?;
        match flags.command.as_deref() {
            Some("help") => flags.topic = args.opt_free_from_str().map_err(usage)?,
            Some("export") => flags.dir = args.opt_free_from_str().map_err(usage)?,
            Some("tags") => flags.repository = args.opt_free_from_str().map_err(usage)?,
            _ => {}
        }
        no_rest(args.finish())?;
        Ok(flags)
    }

    /// The command the flags make, once each flag is checked against it.
    fn command(self) -> Result<Command, Error> {
        let Some(name) = self.command.clone() else {
            return if self.version {
                Ok(Command::Version)
            } else if self.help {
                Ok(Command::Help(MAIN_HELP))
            } else {
                Err(Error::Usage(
                    "a command is required: load, export, check, tags or sync".into(),
                ))
            };
        };
        if self.version {
            return Err(Error::Usage(format!(
                "unexpected argument '{name}' after --version"
            )));
        }
        if name == "help" {
            return help(self.topic.as_deref());
        }
        if let Some(text) = help_text(&name).filter(|_| self.help) {
            return Ok(Command::Help(text));
        }
        match name.as_str() {
            "load" => self.load(),
            "export" => self.export(),
            "check" => self.no_options("check").map(|()| Command::Check),
            "tags" => self.tags(),
            "sync" => self.no_options("sync").map(|()| Command::Sync),
            other => Err(Error::Usage(format!(
                "unknown command '{other}'; the commands are load, export, check, tags and sync"
            ))),
        }
    }

    /// `tags`' options.
    fn tags(self) -> Result<Command, Error> {
        misplaced("tags", "export", &[("--archive", self.archive.is_some())])?;
        let load = self.load_flags();
        misplaced("tags", "load", &load[1..3])?;
        misplaced("tags", "load", &load[4..])?;
        let Some(repository) = self.repository else {
            return Err(Error::Usage(
                "tags needs a repository (docker.io/library/nginx)".into(),
            ));
        };
        let rules = &self.rules;
        let none = rules.semver.is_none()
            && rules.matching.is_none()
            && rules.exclude.is_empty()
            && rules.latest.is_none()
            && !rules.all_tags;
        if none {
            return Err(Error::Usage(
                "tags needs a rule (--semver, --match, --exclude, --latest) or --all-tags".into(),
            ));
        }
        tag_rules(rules)?;
        Ok(Command::Tags(TagsOptions {
            repository,
            rules: self.rules,
            registry: self.registry,
            json: self.json,
        }))
    }

    /// The rule flags given, for a command that takes none.
    fn rule_flags(&self) -> [(&'static str, bool); 5] {
        let r = &self.rules;
        [
            ("--semver", r.semver.is_some()),
            ("--match", r.matching.is_some()),
            ("--exclude", !r.exclude.is_empty()),
            ("--latest", r.latest.is_some()),
            ("--all-tags", r.all_tags),
        ]
    }

    /// `load`'s options.
    fn load(self) -> Result<Command, Error> {
        misplaced("load", "export", &[("--archive", self.archive.is_some())])?;
        misplaced("load", "tags", &self.rule_flags())?;
        Ok(Command::Load(LoadOptions {
            selection: self.selection("load")?,
            dry_run: self.dry_run,
            json: self.json,
            force: self.force,
            wait: self.wait.unwrap_or(DEFAULT_WAIT),
            from: self.from,
        }))
    }

    /// `export`'s options.
    fn export(self) -> Result<Command, Error> {
        misplaced("export", "tags", &self.rule_flags())?;
        misplaced(
            "export",
            "load",
            &[
                ("--force", self.force),
                ("--wait", self.wait.is_some()),
                ("--from", self.from.is_some()),
            ],
        )?;
        let selection = self.selection("export")?;
        let into = match (self.dir, self.archive) {
            (Some(dir), None) => ExportTo::Dir(dir),
            (None, Some(file)) => ExportTo::Archive(file),
            (Some(_), Some(_)) => {
                return Err(Error::Usage(
                    "export writes into DIR or --archive FILE.tar, not both".into(),
                ));
            }
            (None, None) => {
                return Err(Error::Usage(
                    "export needs a directory (DIR) or --archive FILE.tar".into(),
                ));
            }
        };
        Ok(Command::Export(ExportOptions {
            selection,
            into,
            dry_run: self.dry_run,
            json: self.json,
        }))
    }

    /// `--registry HOST` or `--all`, exactly one, for `command`.
    fn selection(&self, command: &str) -> Result<Selection, Error> {
        match (&self.registry, self.all) {
            (Some(host), false) => Ok(Selection::One(host.clone())),
            (None, true) => Ok(Selection::All),
            (Some(_), true) => Err(Error::Usage(format!(
                "{command} takes --registry HOST or --all, not both"
            ))),
            (None, false) => Err(Error::Usage(format!(
                "{command} needs --registry HOST or --all"
            ))),
        }
    }

    /// For `check` and `sync`, which take none of `load`'s or `export`'s
    /// options.
    fn no_options(&self, command: &str) -> Result<(), Error> {
        misplaced(command, "export", &[("--archive", self.archive.is_some())])?;
        misplaced(command, "tags", &self.rule_flags())?;
        misplaced(command, "load", &self.load_flags())
    }

    /// The options of `load` (`export` takes some of them too), each with
    /// whether it was given, in the order a misplaced one is reported.
    fn load_flags(&self) -> [(&'static str, bool); 7] {
        [
            ("--registry", self.registry.is_some()),
            ("--all", self.all),
            ("--dry-run", self.dry_run),
            ("--json", self.json),
            ("--force", self.force),
            ("--wait", self.wait.is_some()),
            ("--from", self.from.is_some()),
        ]
    }
}

/// `tags`' rule flags, read before the free arguments.
fn rule_text(args: &mut pico_args::Arguments) -> Result<RuleText, Error> {
    let latest: Option<String> = args.opt_value_from_str("--latest").map_err(usage)?;
    let latest = latest
        .map(|n| {
            n.parse::<usize>()
                .map_err(|_| Error::Usage(format!("--latest needs a number of tags, not '{n}'")))
        })
        .transpose()?;
    Ok(RuleText {
        semver: args.opt_value_from_str("--semver").map_err(usage)?,
        matching: args.opt_value_from_str("--match").map_err(usage)?,
        exclude: args.values_from_str("--exclude").map_err(usage)?,
        latest,
        all_tags: args.contains("--all-tags"),
    })
}

/// `tags`' rules, checked; an error names the flag at fault.
pub fn tag_rules(text: &RuleText) -> Result<Rules, Error> {
    let flag = |rule: &str| match rule {
        "allTags" => "--all-tags".to_string(),
        other => format!("--{other}"),
    };
    Rules::new(text, &flag).map_err(Error::Usage)
}

/// An error for the first argument pico-args did not take.
fn no_rest(rest: Vec<OsString>) -> Result<(), Error> {
    match rest.first() {
        None => Ok(()),
        Some(extra) => {
            let extra = extra.to_string_lossy();
            Err(Error::Usage(if extra.starts_with('-') {
                format!("unknown option '{extra}'")
            } else {
                format!("unexpected argument '{extra}'")
            }))
        }
    }
}

/// From `-q` and the number of `-v`s.
fn verbosity(quiet: bool, verbose: u32) -> Result<Verbosity, Error> {
    match (quiet, verbose) {
        (true, 0) => Ok(Verbosity::Quiet),
        (true, _) => Err(Error::Usage(
            "--quiet and --verbose cannot be used together".into(),
        )),
        (false, 0) => Ok(Verbosity::Normal),
        (false, 1) => Ok(Verbosity::Debug),
        (false, _) => Ok(Verbosity::Trace),
    }
}

/// An error naming the first of `flags` that was given to `command`: it
/// belongs to `owner`.
fn misplaced(command: &str, owner: &str, flags: &[(&str, bool)]) -> Result<(), Error> {
    match flags.iter().find(|(_, given)| *given) {
        Some((flag, _)) => Err(Error::Usage(format!(
            "{flag} belongs to '{owner}', not '{command}'"
        ))),
        None => Ok(()),
    }
}

/// `help [COMMAND]`.
fn help(topic: Option<&str>) -> Result<Command, Error> {
    match topic {
        None => Ok(Command::Help(MAIN_HELP)),
        Some(name) => help_text(name).map(Command::Help).ok_or_else(|| {
            Error::Usage(format!(
                "no help for '{name}'; the commands are load, export, check, tags and sync"
            ))
        }),
    }
}

/// A command's help text.
fn help_text(command: &str) -> Option<&'static str> {
    match command {
        "load" => Some(LOAD_HELP),
        "export" => Some(EXPORT_HELP),
        "check" => Some(CHECK_HELP),
        "tags" => Some(TAGS_HELP),
        "sync" => Some(SYNC_HELP),
        _ => None,
    }
}

/// `--wait`'s value: a duration as the configuration writes them, or 0.
fn parse_wait(text: &str) -> Result<Duration, Error> {
    if text.trim().parse::<u64>() == Ok(0) {
        return Ok(Duration::ZERO);
    }
    crate::config::parse_duration(text)
        .map_err(|e| Error::Usage(format!("--wait: {e}")))
        .and_then(|d| {
            if d > crate::config::MAX_TIMEOUT {
                Err(Error::Usage(format!(
                    "--wait: '{text}' is longer than the longest allowed, 24h"
                )))
            } else {
                Ok(d)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Cli, Error> {
        parse(args.iter().map(OsString::from).collect())
    }

    fn usage_error(args: &[&str]) -> String {
        match parse_str(args) {
            Err(Error::Usage(msg)) => msg,
            other => panic!("{args:?}: expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn load_forms() {
        let cli = parse_str(&[
            "load",
            "--registry",
            "r.io",
            "--dry-run",
            "--json",
            "--state-dir",
            "/s",
        ])
        .unwrap();
        assert_eq!(
            cli.command,
            Command::Load(LoadOptions {
                selection: Selection::One("r.io".into()),
                dry_run: true,
                json: true,
                force: false,
                wait: DEFAULT_WAIT,
                from: None,
            })
        );
        let waits = parse_str(&["load", "--all", "--wait", "90s"]).unwrap();
        assert!(matches!(
            waits.command,
            Command::Load(LoadOptions { wait, .. }) if wait == Duration::from_secs(90)
        ));
        let now = parse_str(&["load", "--all", "-w", "0"]).unwrap();
        assert!(matches!(
            now.command,
            Command::Load(LoadOptions { wait, .. }) if wait.is_zero()
        ));
        assert!(usage_error(&["load", "--all", "--wait", "soon"]).starts_with("--wait: 'soon'"));
        assert_eq!(
            usage_error(&["sync", "--wait", "1m"]),
            "--wait belongs to 'load', not 'sync'"
        );
        assert_eq!(cli.state_dir, Some(PathBuf::from("/s")));
        let forced = parse_str(&["load", "--all", "--force"]).unwrap();
        assert!(matches!(
            forced.command,
            Command::Load(LoadOptions { force: true, .. })
        ));
        let cli = parse_str(&["--config", "/x.yaml", "load", "--all", "-vv"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("/x.yaml")));
        assert_eq!(cli.verbosity, Verbosity::Trace);
        assert!(matches!(
            cli.command,
            Command::Load(LoadOptions {
                selection: Selection::All,
                ..
            })
        ));
        let cli = parse_str(&["load", "--registry=r.io", "--config=c.yaml", "-q"]).unwrap();
        assert_eq!(cli.verbosity, Verbosity::Quiet);
        assert_eq!(cli.config, Some(PathBuf::from("c.yaml")));
    }

    #[test]
    fn export_and_load_from_forms() {
        let cli = parse_str(&["export", "--registry", "r.io", "/media/site", "--json"]).unwrap();
        assert_eq!(
            cli.command,
            Command::Export(ExportOptions {
                selection: Selection::One("r.io".into()),
                into: ExportTo::Dir(PathBuf::from("/media/site")),
                dry_run: false,
                json: true,
            })
        );
        let cli = parse_str(&["export", "--all", "--archive", "s.tar", "-n"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Export(ExportOptions { into: ExportTo::Archive(ref f), dry_run: true, .. })
                if f == &PathBuf::from("s.tar")
        ));
        let cli = parse_str(&["load", "--all", "--from", "s.tar"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Load(LoadOptions { from: Some(ref f), .. }) if f == &PathBuf::from("s.tar")
        ));
        assert_eq!(
            usage_error(&["export", "--all"]),
            "export needs a directory (DIR) or --archive FILE.tar"
        );
        assert_eq!(
            usage_error(&["export", "--all", "d", "--archive", "f.tar"]),
            "export writes into DIR or --archive FILE.tar, not both"
        );
        assert_eq!(
            usage_error(&["export", "d"]),
            "export needs --registry HOST or --all"
        );
        assert_eq!(
            usage_error(&["export", "--all", "d", "--force"]),
            "--force belongs to 'load', not 'export'"
        );
        assert_eq!(
            usage_error(&["export", "--all", "d", "--from", "x"]),
            "--from belongs to 'load', not 'export'"
        );
        assert_eq!(
            usage_error(&["load", "--all", "--archive", "x.tar"]),
            "--archive belongs to 'export', not 'load'"
        );
        assert_eq!(
            usage_error(&["sync", "--from", "x"]),
            "--from belongs to 'load', not 'sync'"
        );
        assert_eq!(
            usage_error(&["export", "--all", "a", "b"]),
            "unexpected argument 'b'"
        );
        assert_eq!(
            parse_str(&["export", "--help"]).unwrap().command,
            Command::Help(EXPORT_HELP)
        );
    }

    #[test]
    fn help_and_version_anywhere() {
        assert_eq!(
            parse_str(&["--help"]).unwrap().command,
            Command::Help(MAIN_HELP)
        );
        assert_eq!(
            parse_str(&["help"]).unwrap().command,
            Command::Help(MAIN_HELP)
        );
        assert_eq!(
            parse_str(&["load", "--help"]).unwrap().command,
            Command::Help(LOAD_HELP)
        );
        assert_eq!(
            parse_str(&["check", "-h"]).unwrap().command,
            Command::Help(CHECK_HELP)
        );
        assert_eq!(
            parse_str(&["sync", "--help"]).unwrap().command,
            Command::Help(SYNC_HELP)
        );
        assert_eq!(parse_str(&["-V"]).unwrap().command, Command::Version);
        assert_eq!(
            parse_str(&["help", "load"]).unwrap().command,
            Command::Help(LOAD_HELP)
        );
        assert_eq!(
            parse_str(&["help", "sync"]).unwrap().command,
            Command::Help(SYNC_HELP)
        );
        assert_eq!(parse_str(&["check"]).unwrap().command, Command::Check);
    }

    #[test]
    fn anything_not_understood_is_an_error() {
        assert_eq!(
            usage_error(&["--version", "bogus"]),
            "unexpected argument 'bogus' after --version"
        );
        assert_eq!(
            usage_error(&["load", "--registry", "--all"]),
            "--registry needs a hostname, not '--all'"
        );
        assert!(usage_error(&["help", "mirror"]).starts_with("no help for 'mirror'"));
        assert_eq!(
            usage_error(&["help", "load", "x"]),
            "unexpected argument 'x'"
        );
        assert_eq!(
            usage_error(&["load", "--all", "--frobnicate"]),
            "unknown option '--frobnicate'"
        );
        assert_eq!(
            usage_error(&["load", "--all", "extra"]),
            "unexpected argument 'extra'"
        );
        assert_eq!(
            usage_error(&["check", "extra"]),
            "unexpected argument 'extra'"
        );
        assert_eq!(
            usage_error(&["load"]),
            "load needs --registry HOST or --all"
        );
        assert_eq!(
            usage_error(&["load", "--all", "--registry", "r"]),
            "load takes --registry HOST or --all, not both"
        );
        assert!(usage_error(&["load", "--registry"]).contains("--registry"));
        assert_eq!(
            usage_error(&[]),
            "a command is required: load, export, check, tags or sync"
        );
        assert!(usage_error(&["mirror"]).starts_with("unknown command 'mirror'"));
        assert_eq!(
            usage_error(&["check", "--all"]),
            "--all belongs to 'load', not 'check'"
        );
        assert_eq!(
            usage_error(&["load", "--all", "-q", "-v"]),
            "--quiet and --verbose cannot be used together"
        );
    }

    #[test]
    fn check_and_sync_take_no_command_options() {
        let cases: [(&[&str], &str); 3] = [
            (
                &["sync", "--archive", "a.tar", "--all"],
                "--archive belongs to 'export', not 'sync'",
            ),
            (
                &["check", "--json", "--force"],
                "--json belongs to 'load', not 'check'",
            ),
            (
                &["sync", "--registry", "r.io"],
                "--registry belongs to 'load', not 'sync'",
            ),
        ];
        for (args, message) in cases {
            assert_eq!(usage_error(args), message);
        }
        assert_eq!(
            parse_str(&["sync", "--help", "--all"]).unwrap().command,
            Command::Help(SYNC_HELP)
        );
    }

    #[test]
    fn help_texts_fit_a_terminal() {
        for text in HELP_TEXTS {
            for line in text.lines() {
                assert!(line.chars().count() <= 80, "too long: {line}");
            }
        }
    }

    #[test]
    fn tags_takes_a_repository_and_rules() {
        let cli = parse_str(&[
            "tags",
            "docker.io/library/nginx",
            "--semver",
            ">=1.25, <2",
            "--exclude",
            "-rc",
            "--exclude",
            "alpine",
            "--latest",
            "3",
            "-r",
            "mirror.example",
            "--json",
        ])
        .unwrap();
        let Command::Tags(options) = cli.command else {
            panic!("{:?}", cli.command);
        };
        assert_eq!(options.repository, "docker.io/library/nginx");
        assert_eq!(options.rules.semver.as_deref(), Some(">=1.25, <2"));
        assert_eq!(options.rules.exclude, ["-rc", "alpine"]);
        assert_eq!(options.rules.latest, Some(3));
        assert_eq!(options.registry.as_deref(), Some("mirror.example"));
        assert!(options.json);
    }

    #[test]
    fn tags_refuses_bad_rules_and_misplaced_flags() {
        let err = |args: &[&str]| parse_str(args).unwrap_err().to_string();
        assert!(err(&["tags"]).contains("needs a repository"));
        assert!(err(&["tags", "nginx"]).contains("needs a rule"));
        assert!(err(&["tags", "nginx", "--semver", ">=x"]).contains("--semver"));
        assert!(err(&["tags", "nginx", "--latest", "0"]).contains("--latest"));
        assert!(err(&["tags", "nginx", "--latest", "two"]).contains("'two'"));
        assert!(err(&["tags", "nginx", "--all-tags", "--match", "x"]).contains("--all-tags"));
        assert!(err(&["tags", "nginx", "--all-tags", "--force"]).contains("--force"));
        assert!(err(&["load", "--all", "--latest", "2"]).contains("--latest"));
        assert!(err(&["check", "--all-tags"]).contains("--all-tags"));
    }
}
