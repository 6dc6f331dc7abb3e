//! Target repositories that a registry does not create on the first push
//! (ECR without create-on-push, Harbor projects). Before the first image of
//! a run moves to a repository, an upload is opened there and cancelled: a
//! registry that answers 404 `NAME_UNKNOWN` or 403 `DENIED` needs the
//! repository created. Then the registry's `createRepositoryScript` runs
//! (through the one spawner, once per repository and run) and the upload is
//! tried once more; without the hook, or when it fails, the image fails
//! with a message that names the repository to create. This holds for
//! every engine alike, and comes before the source is pulled; how images
//! move is the engines' business. An engine that uploads blobs itself (the
//! native one) keeps the upload for its first blob there instead; what no
//! blob used is cancelled when the run ends.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use crate::credentials::Credentials;
use crate::engine::{Access, Failed, Job, RunMemory};
use crate::error::{Error, excerpt, human_duration};
use crate::mutex::lock;
use crate::process::{self, Cancel, Failure, Spec, Stream};
use crate::registry::{Client, Repository};

/// How long `createRepositoryScript` may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(120);

/// What a run learnt of its target repositories: ready, or why not.
#[derive(Default)]
pub struct Targets {
    known: Mutex<HashMap<String, Result<(), String>>>,
    /// Whether the upload a check opens is kept for the engine's first blob.
    keep: bool,
}

impl Targets {
    /// For a run whose engine sends blobs itself (`keep`) or not.
    pub fn new(keep: bool) -> Targets {
        Targets {
            keep,
            ..Targets::default()
        }
    }

    /// Cancels the uploads checks kept that no blob used.
    pub fn cancel_unused(&self, client: &Client, access: &Access, memory: &RunMemory) {
        for (repo, upload) in memory.unused_uploads() {
            client.cancel_upload(&repo, &upload, access.push());
        }
    }

    /// Makes sure the registry takes uploads into `job`'s target
    /// repository, running `createRepositoryScript` when it must (its
    /// children honour `cancel`); once per repository and run.
    pub fn ensure(&self, job: &Job<'_>, cancel: &Cancel) -> Result<(), Failed> {
        if !job.to.is_registry() {
            return Ok(());
        }
        let (name, _) = job
            .target
            .rsplit_once(':')
            .unwrap_or((job.target, "latest"));
        let repo = job.access.target(name);
        let known = lock(&self.known).get(name).cloned();
        let result = match known {
            Some(known) => known,
            None => {
                let found = self.check(job, &repo, cancel)?;
                lock(&self.known).insert(name.to_string(), found.clone());
                found
            }
        };
        result.map_err(|message| {
            let error = Error::RepositoryMissing {
                host: repo.host.clone(),
                message,
            };
            Failed::new(error, &repo.host)
        })
    }

    /// Opens an upload in `repo`, and when the registry refuses to create
    /// the repository, runs the hook and tries once more. The error is the
    /// message for every image of the repository; a hook stopped by the
    /// shutdown is the only failure told as an `Error`.
    fn check(
        &self,
        job: &Job<'_>,
        repo: &Repository,
        cancel: &Cancel,
    ) -> Result<Result<(), String>, Failed> {
        let keep = self.keep.then_some(job.memory);
        let creds = job.access.push();
        let Some(refusal) = refused(job.client, repo, creds, keep) else {
            return Ok(Ok(()));
        };
        let host = &repo.host;
        let said = format!(
            "{host} refused to create repository {} ({refusal})",
            repo.path
        );
        let Some(script) = &job.registry.create_repository_script else {
            return Ok(Err(format!(
                "{said}: create it first, or set createRepositoryScript"
            )));
        };
        log::info!(
            "{}: {said}; running createRepositoryScript {}",
            job.item.name(),
            script.display()
        );
        match run_hook(script, repo, cancel) {
            Ok(()) => {}
            Err(HookFailed::Interrupted) => {
                let command = format!("createRepositoryScript {}", script.display());
                return Err(Failed::new(Error::Interrupted { command }, host));
            }
            Err(HookFailed::Said(why)) => {
                return Ok(Err(format!(
                    "{said}, and createRepositoryScript {} failed: {why}",
                    script.display()
                )));
            }
        }
        Ok(match refused(job.client, repo, creds, keep) {
            None => {
                log::info!("{}: {host} created {}", job.item.name(), repo.path);
                Ok(())
            }
            Some(again) => Err(format!(
                "{host} refused to create repository {} ({again}) even after createRepositoryScript {} ran",
                repo.path,
                script.display()
            )),
        })
    }
}

/// How the registry refused to open an upload in `repo` because the
/// repository does not exist (`404 NAME_UNKNOWN`, `403 DENIED`); None when
/// it opened one (kept in `keep` when given, else cancelled at once) or
/// failed otherwise, which the move itself will meet and report.
fn refused(
    client: &Client,
    repo: &Repository,
    creds: Option<&Credentials>,
    keep: Option<&RunMemory>,
) -> Option<String> {
    match client.start_upload(repo, creds) {
        Ok(upload) => {
            match keep {
                Some(memory) => memory.keep_upload(repo, upload),
                None => client.cancel_upload(repo, &upload, creds),
            }
            None
        }
        Err(e) => {
            let refusal = refusal(&e);
            if refusal.is_none() {
                log::debug!("opening an upload in {}: {e}", repo.path);
            }
            refusal
        }
    }
}

/// `404 NAME_UNKNOWN` or `403 DENIED` (the code as the registry gave it)
/// for an error that says a repository is missing.
fn refusal(e: &Error) -> Option<String> {
    let Error::Registry {
        status: Some(status @ (403 | 404)),
        code,
        ..
    } = e
    else {
        return None;
    };
    match (status, code.as_deref()) {
        (404, None | Some("NAME_UNKNOWN")) | (403, None | Some("DENIED")) => Some(format!(
            "{status} {}",
            code.as_deref().unwrap_or(if *status == 404 {
                "NAME_UNKNOWN"
            } else {
                "DENIED"
            })
        )),
        _ => None,
    }
}

/// Why the hook did not create the repository.
enum HookFailed {
    /// The shutdown stopped it.
    Interrupted,
    /// It failed; how, with the end of what it wrote to stderr.
    Said(String),
}

/// Runs `script REPOSITORY REGISTRY` (`mirror/app registry.example.com`),
/// with picture-book's environment and no credentials, for at most
/// [`HOOK_TIMEOUT`]; its stderr lines go to the log.
fn run_hook(script: &Path, repo: &Repository, cancel: &Cancel) -> Result<(), HookFailed> {
    let spec = Spec::new(
        script.as_os_str(),
        [repo.path.as_str(), repo.host.as_str()],
        HOOK_TIMEOUT,
    )
    .max_output(1 << 20);
    let name = script.file_name().unwrap_or(script.as_os_str());
    let name = name.to_string_lossy();
    let result = process::run(&spec, cancel, &mut |stream, line| {
        if stream == Stream::Stderr && !line.trim().is_empty() {
            log::info!("{name}: {}", excerpt(line.trim(), 300));
        }
    });
    let said = |s: String| Err(HookFailed::Said(s));
    match result {
        Ok(done) if done.status.success() => Ok(()),
        Ok(done) => {
            let stderr = excerpt(done.stderr.trim(), 300);
            let status = done.describe_status();
            if stderr.is_empty() {
                said(format!("{status}, nothing on stderr"))
            } else {
                said(format!("{status}: {stderr}"))
            }
        }
        Err(Failure::Cancelled) => Err(HookFailed::Interrupted),
        Err(Failure::TimedOut) => said(format!(
            "it ran past {} and was killed",
            human_duration(HOOK_TIMEOUT)
        )),
        Err(Failure::NotFound) => said("it does not exist".into()),
        Err(Failure::Spawn(e)) => said(format!("it cannot be started: {e}")),
        Err(Failure::TooMuchOutput(_)) => said("it wrote more than 1 MiB and was killed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, code: Option<&str>) -> Error {
        Error::Registry {
            host: "r.example.com".into(),
            status: Some(status),
            code: code.map(String::from),
            detail: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn a_missing_repository_is_told_from_other_refusals() {
        assert_eq!(
            refusal(&answered(404, Some("NAME_UNKNOWN"))).as_deref(),
            Some("404 NAME_UNKNOWN")
        );
        assert_eq!(
            refusal(&answered(403, Some("DENIED"))).as_deref(),
            Some("403 DENIED")
        );
        assert_eq!(
            refusal(&answered(404, None)).as_deref(),
            Some("404 NAME_UNKNOWN")
        );
        assert_eq!(refusal(&answered(401, Some("UNAUTHORIZED"))), None);
        assert_eq!(refusal(&answered(404, Some("BLOB_UNKNOWN"))), None);
        assert_eq!(refusal(&answered(500, None)), None);
        let network = Error::Network {
            host: "r".into(),
            detail: "refused".into(),
        };
        assert_eq!(refusal(&network), None);
    }

    #[test]
    fn the_hook_gets_the_repository_and_its_failure_is_told_with_its_stderr() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pb-create-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("create.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"$1 $2\" > \"$(dirname \"$0\")/asked\"\necho 'no such project' >&2\nexit 3\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let repo = Repository::target("r.example.com/mirror/app", false);
        let Err(HookFailed::Said(why)) = run_hook(&script, &repo, &Cancel::default()) else {
            panic!("the hook did not fail");
        };
        assert_eq!(why, "exit status 3: no such project");
        let asked = std::fs::read_to_string(dir.join("asked")).unwrap();
        assert_eq!(asked.trim(), "mirror/app r.example.com");
    }
}
