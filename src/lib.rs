//! picture-book mirrors container images into container registries: for each
//! configured target registry, a listing (its syncer script and its
//! `images`) names images,
//! and an engine moves them. This crate root wires the commands together.
//! The modules are layers; each imports only from those below it:
//! - leaves: `reference`, `platform`, `digest`, `secret`, `error`, `exit`,
//!   `mutex`, `inflight` (one asks, the others wait for its answer), `flock`
//!   (the run lock), `process` (the one spawner) and
//!   `descendants`, `signals`, `credentials`, `display`, `commands` (what
//!   may be run as a script);
//! - `selection`: how tags read as versions, and the rules that choose
//!   among them;
//! - `config`: the file, checked into the types everything else reads;
//! - `registry` (the registry HTTP client, split by job) and `layout` (OCI
//!   image layouts);
//! - `engine`: what moves images (docker, podman, native) behind one trait;
//! - `listing`: what a registry mirrors; `run`: one run over one registry;
//! - `daemon`: schedules and the HTTP API; `cli`: the command line.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod descendants;
pub mod digest;
pub mod display;
pub mod engine;
pub mod error;
pub mod exit;
pub mod flock;
pub mod inflight;
pub mod layout;
pub mod listing;
pub mod mutex;
pub mod platform;
pub mod process;
pub mod reference;
pub mod registry;
pub mod run;
pub mod secret;
pub mod selection;
pub mod signals;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use chrono::{Local, SecondsFormat};

use crate::cli::{Cli, Command, ExportOptions, ExportTo, LoadOptions, Selection, TagsOptions};
use crate::daemon::{Daemon, api};
use crate::display::{Progress, Verbosity};
use crate::engine::{EngineSet, Engines};
use crate::error::Error;
use crate::exit::ExitCode;
use crate::process::Cancel;
use crate::registry::Client;
use crate::run::report::{self, RegistryReport, Report, RunOutcome};
use crate::run::{mirror, state};
use crate::signals::{Request, Signals};

/// Runs the command `cli` asks for and returns the exit status it calls for.
pub fn run(cli: &Cli) -> Result<ExitCode, Error> {
    match &cli.command {
        Command::Help(text) => {
            print_out(text)?;
            Ok(ExitCode::Success)
        }
        Command::Version => {
            print_out(&format!("picture-book {}\n", cli::VERSION))?;
            Ok(ExitCode::Success)
        }
        Command::Check => check(cli),
        Command::Tags(options) => tags(cli, options),
        Command::Load(options) => load(cli, options),
        Command::Export(options) => export(cli, options),
        Command::Sync => sync(cli),
    }
}

fn print_out(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(Error::Output)
}

/// `check`: validate, then print each registry's engine and next three runs.
fn check(cli: &Cli) -> Result<ExitCode, Error> {
    let config = config::load(&config::locate(cli.config.as_deref())?)?;
    let now = Local::now();
    let mut text = String::new();
    for r in &config.registries {
        let runs: Vec<String> = match &r.schedule {
            Some(s) => s
                .upcoming(&now, 3)
                .iter()
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, false))
                .collect(),
            None => vec!["unscheduled".to_string()],
        };
        text.push_str(&format!(
            "{} {} {}\n",
            r.hostname,
            r.engine.name(),
            runs.join(" ")
        ));
    }
    print_out(&text)?;
    let dir = state_dir(cli, &config);
    if let Some(problem) = flock::dir_problem(&dir) {
        log::warn!(
            "the state directory {problem}: runs refuse to start until it can be used, since they would not be kept apart from other picture-books (set stateDir or --state-dir)"
        );
    }
    let n = config.registries.len();
    let noun = if n == 1 { "registry" } else { "registries" };
    log::info!("{}: valid ({n} {noun})", config.path.display());
    Ok(ExitCode::Success)
}

/// `tags`: list a repository's tags, choose among them by the rules, and
/// print the choice one reference per line (or every decision, `--json`).
fn tags(cli: &Cli, options: &TagsOptions) -> Result<ExitCode, Error> {
    let text = &options.repository;
    let reference =
        reference::Reference::parse(text).map_err(|e| Error::Usage(format!("tags: {e}")))?;
    if reference.name() != *text {
        return Err(Error::Usage(format!(
            "tags needs a repository without a tag or digest, not '{text}'"
        )));
    }
    let rules = cli::tag_rules(&options.rules)?;
    let (repo, creds) = tags_access(cli, options, &reference)?;
    let listed =
        Client::default().all_tags(&repo, creds.as_ref(), listing::entries::MAX_LISTED_TAGS)?;
    let decisions = rules.choose(&listed);
    let name = reference.name();
    let out = if options.json {
        let json = serde_json::json!({
            "repository": name,
            "listed": listed.len(),
            "chosen": decisions.iter().filter(|d| d.chosen).count(),
            "tags": decisions,
        });
        let mut text = serde_json::to_string_pretty(&json).map_err(|e| Error::Output(e.into()))?;
        text.push('\n');
        text
    } else {
        decisions
            .iter()
            .filter(|d| d.chosen)
            .map(|d| format!("{name}:{}\n", d.tag))
            .collect()
    };
    print_out(&out)?;
    Ok(ExitCode::Success)
}

/// The repository `tags` lists and its credentials: the `pullAuthConfig`
/// of the registry `--registry` (else `$PICTURE_BOOK_REGISTRY`, which a
/// syncer script is given) names, resolved as a run resolves it; else the
/// operator's own docker login.
fn tags_access(
    cli: &Cli,
    options: &TagsOptions,
    reference: &reference::Reference,
) -> Result<(registry::Repository, Option<credentials::Credentials>), Error> {
    let host = options.registry.clone().or_else(|| {
        std::env::var(listing::script::REGISTRY_VARIABLE)
            .ok()
            .filter(|h| !h.is_empty())
    });
    match host {
        Some(host) => {
            let config = config::load(&config::locate(cli.config.as_deref())?)?;
            let access = engine::access::Access::of(config.registry(&host)?, true);
            let repo = access.source(reference);
            let creds = access.pull(&repo.host);
            Ok((repo, creds))
        }
        None => {
            let repo = registry::Repository::of(reference, &|_| false);
            let creds = credentials::operator_credentials(&repo.host);
            Ok((repo, creds))
        }
    }
}

/// `load`: mirror the selected registries once, one after another (from
/// the layout `--from` names, when it is given).
fn load(cli: &Cli, options: &LoadOptions) -> Result<ExitCode, Error> {
    let mut config = config::load(&config::locate(cli.config.as_deref())?)?;
    for registry in &mut config.registries {
        registry.prune |= options.prune;
    }
    if !options.dry_run {
        flock::usable_dir(&state_dir(cli, &config))
            .map_err(|problem| Error::StateDirUnusable { problem })?;
    }
    let layout = options
        .from
        .as_deref()
        .map(layout::Reader::open)
        .transpose()?;
    if let Some(warning) = layout.as_ref().and_then(|l| l.warning()) {
        log::warn!("{warning}");
    }
    let runs = Runs {
        selection: &options.selection,
        dry_run: options.dry_run,
        force: options.force,
        wait: Some(options.wait),
        mode: layout
            .as_ref()
            .map_or(mirror::Mode::Mirror, mirror::Mode::Import),
    };
    let mut report = run_selected(cli, &config, &runs)?;
    if let Some(layout) = &layout {
        report.from = Some(layout.shown().to_string());
        for r in &mut report.registries {
            r.warnings.extend(layout.warning().map(String::from));
        }
    }
    print_report(cli, &report, options.json)
}

/// `export`: write what the selected registries' syncer scripts list into
/// one layout, then its `index.json` (an archive is renamed into place).
fn export(cli: &Cli, options: &ExportOptions) -> Result<ExitCode, Error> {
    let config = config::load(&config::locate(cli.config.as_deref())?)?;
    if let Selection::One(host) = &options.selection {
        config.registry(host)?;
    }
    let (path, archive) = match &options.into {
        ExportTo::Dir(dir) => (dir, false),
        ExportTo::Archive(file) => (file, true),
    };
    let writer = match (options.dry_run, archive) {
        (true, _) => layout::Writer::planning(path),
        (false, false) => layout::Writer::dir(path)?,
        (false, true) => layout::Writer::archive(path)?,
    };
    let runs = Runs {
        selection: &options.selection,
        dry_run: options.dry_run,
        force: false,
        wait: None,
        mode: mirror::Mode::Export(&writer),
    };
    let mut report = match run_selected(cli, &config, &runs) {
        Ok(report) => report,
        Err(e) => {
            writer.abandon();
            return Err(e);
        }
    };
    let error = if options.dry_run {
        None
    } else {
        finish_export(&writer, &report, path, archive).err()
    };
    report.export = Some(report::ExportReport {
        path: path.display().to_string(),
        archive,
        bytes_written: writer.bytes(),
        error,
    });
    print_report(cli, &report, options.json)
}

/// Finishes the layout `export` wrote. A directory lists what this export
/// wrote and, for the images that failed, what it held before; an archive,
/// which cannot hold what the one it replaces held, is renamed into place
/// only when every image is in it, and the previous one is kept otherwise.
fn finish_export(
    writer: &layout::Writer,
    report: &Report,
    path: &std::path::Path,
    archive: bool,
) -> Result<(), String> {
    let keep = layout::Keep {
        ran: report
            .registries
            .iter()
            .filter(|r| r.error.is_none())
            .map(|r| r.hostname.clone())
            .collect(),
        failed: report
            .registries
            .iter()
            .flat_map(|r| r.images.iter().map(move |i| (r, i)))
            .filter(|(_, i)| i.outcome != report::Outcome::Mirrored)
            .map(|(r, i)| (r.hostname.clone(), i.source.clone()))
            .collect(),
    };
    let incomplete = report.registries.iter().any(|r| !r.is_complete());
    let result = if archive && incomplete {
        Err(format!(
            "{}: not written, since not every image is in it{}",
            path.display(),
            if path.exists() {
                "; the previous archive is kept"
            } else {
                ""
            }
        ))
    } else {
        writer.finish(&keep).map_err(|e| e.to_string())
    };
    if let Err(e) = &result {
        log::error!("{e}");
        writer.abandon();
    }
    result
}

/// What `load` and `export` run.
struct Runs<'a> {
    selection: &'a Selection,
    dry_run: bool,
    force: bool,
    /// How long to wait for another process's run of a registry; None to
    /// take no lock.
    wait: Option<std::time::Duration>,
    mode: mirror::Mode<'a>,
}

/// Runs the registries `runs` selects, one after another, until the
/// operator interrupts.
fn run_selected(cli: &Cli, config: &config::Config, runs: &Runs<'_>) -> Result<Report, Error> {
    let registries = match runs.selection {
        Selection::One(host) => vec![config.registry(host)?],
        Selection::All => config.registries.iter().collect(),
    };
    engine::config_dir::remove_stale_dirs();
    let cancel = Arc::new(Cancel::default());
    signals::cancel_on_stop(cancel.clone())?;
    let engines = Engines::new(cancel.clone());
    let client = Client::default();
    let state_dir = state_dir(cli, config);
    let progress = Progress::new(config.display, cli.verbosity);
    let stop = || cancel.is_cancelled().then(|| "interrupted".to_string());
    let ctx = mirror::Context {
        engines: &engines,
        client: &client,
        cancel: &cancel,
        state_dir: &state_dir,
        progress: &progress,
        dry_run: runs.dry_run,
        force: runs.force,
        stop: &stop,
        on_image: &|_, _, _| {},
        on_moved: &|_| {},
        lock_wait: runs.wait.filter(|_| !runs.dry_run),
        readiness: &mirror::Readiness::once(),
        mode: runs.mode,
    };
    let mut report = Report {
        dry_run: runs.dry_run,
        registries: Vec::new(),
        export: None,
        from: None,
    };
    for registry in registries {
        let started = Local::now();
        let result = match stop() {
            None => mirror::run(registry, &ctx).unwrap_or_else(|holder| {
                let wait = runs.wait.unwrap_or_default();
                let why = if stop().is_some() {
                    format!("not run: interrupted while another picture-book ran it: {holder}")
                } else {
                    format!(
                        "another picture-book still runs this registry after {} (--wait): {holder}",
                        error::human_duration(wait)
                    )
                };
                log::error!("{}: {why}", registry.hostname);
                RegistryReport::ended_early(&registry.hostname, started, why, RunOutcome::Failed)
            }),
            Some(why) => RegistryReport::ended_early(
                &registry.hostname,
                started,
                format!("not run: {why}"),
                RunOutcome::Failed,
            ),
        };
        report.registries.push(result);
    }
    Ok(report)
}

/// Prints `report` as `--json` or the summary asks, and gives the exit
/// status it calls for.
fn print_report(cli: &Cli, report: &Report, json: bool) -> Result<ExitCode, Error> {
    let code = report.exit_code();
    if json {
        let mut json = serde_json::to_string_pretty(report).map_err(|e| Error::Output(e.into()))?;
        json.push('\n');
        print_out(&json)?;
    } else if cli.verbosity != Verbosity::Quiet || code != ExitCode::Success {
        print_out(&report.summary())?;
    }
    Ok(code)
}

/// The state directory: `--state-dir`, else `stateDir`, else the default.
fn state_dir(cli: &Cli, config: &config::Config) -> PathBuf {
    cli.state_dir
        .clone()
        .or_else(|| config.state_dir.clone())
        .unwrap_or_else(state::default_dir)
}

/// `sync`: the daemon. Validates the configuration, serves the API, runs
/// every registry on its schedule, re-reads the configuration on SIGHUP and
/// stops on SIGTERM or SIGINT.
fn sync(cli: &Cli) -> Result<ExitCode, Error> {
    daemon::limit_arenas();
    let path = config::locate(cli.config.as_deref())?;
    let config = config::load(&path)?;
    engine::config_dir::remove_stale_dirs();
    let mut signals = Signals::new()?;
    let cancel = Arc::new(Cancel::default());
    let engines = Engines::new(cancel.clone());
    let mut used: Vec<engine::Choice> = config.registries.iter().map(|r| r.engine).collect();
    used.dedup();
    for choice in used {
        match engines.get(choice).ready() {
            Ok(ready) => log::info!("engine {}", ready.version),
            Err(e) => log::warn!("{e}; each run of it fails until it is"),
        }
    }
    let state_dir = state_dir(cli, &config);
    if let Some(problem) = flock::dir_problem(&state_dir) {
        log::error!(
            "{}; each run fails until it can be used",
            Error::StateDirUnusable { problem }
        );
    }
    let api_settings = config.api.clone();
    let progress = Progress::new(config.display, cli.verbosity);
    let registries = config.registries.len();
    let daemon = Daemon::new(
        config,
        daemon::Tools {
            engines,
            client: Client::default(),
            state_dir,
            cancel: cancel.clone(),
            progress,
        },
    );
    let server = if api_settings.enabled {
        Some(api::serve(Arc::clone(&daemon), &api_settings)?)
    } else {
        None
    };
    daemon.start();
    log::info!(
        "picture-book {} synchronizing {registries} {} from {}",
        cli::VERSION,
        if registries == 1 {
            "registry"
        } else {
            "registries"
        },
        path.display()
    );
    while signals.wait() == Request::Reload {
        log::info!("SIGHUP: re-reading {}", path.display());
        match config::load(&path) {
            Ok(new) => daemon.reload(new),
            Err(e) => log::error!("keeping the running configuration: {e}"),
        }
    }
    log::info!(
        "shutting down: runs in progress stop after their current image (docker is stopped after {}s at the latest)",
        process::SHUTDOWN_GRACE.as_secs()
    );
    thread::spawn(move || {
        loop {
            if signals.wait() == Request::Stop {
                log::warn!("stopping now");
                cancel.cancel();
            }
        }
    });
    daemon.stop();
    if let Some(server) = server {
        server.stop();
    }
    daemon.join();
    log::info!("stopped");
    Ok(ExitCode::Success)
}
