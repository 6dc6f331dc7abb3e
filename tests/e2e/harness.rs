//! The real test environment, started by the tests themselves: one docker
//! daemon shared by the whole test binary, a distribution registry per test
//! (optionally with htpasswd authentication), images built offline, and a
//! runner for the real `picture-book` binary. Everything lives under one
//! temporary directory; a watchdog process stops the daemons and removes the
//! directory when the test binary exits, however it exits.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;

/// How long the binary under test may run before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// The per-binary temporary root (short: unix socket paths are limited).
pub fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = PathBuf::from(format!("/tmp/pbe-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create test root");
        start_watchdog(&dir);
        dir
    })
}

/// `Basic <user:pass>`, an `Authorization` value.
pub fn basic(user: &str, pass: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {token}")
}

/// A DockerConfigJSON giving `user`/`pass` for `host`.
pub fn auths(host: &str, user: &str, pass: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!(r#"{{"auths":{{"{host}":{{"auth":"{token}"}}}}}}"#)
}

/// A fresh directory under the root.
pub fn fresh_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = root().join(format!("{name}-{}", N.fetch_add(1, Ordering::Relaxed)));
    fs::create_dir_all(&dir).expect("create dir");
    dir
}

/// The lock taken by whoever edits /etc/hosts (fixtures, watchdogs).
pub const HOSTS_LOCK: &str = "/tmp/pb-etc-hosts.lock";

/// Stops everything listed in `<root>/pids`, unmounts what killed docker
/// daemons left mounted under the root, removes the paths listed in
/// `<root>/cleanup-paths` and the /etc/hosts lines listed in
/// `<root>/cleanup-hosts`, and removes the root once this process is gone.
fn start_watchdog(dir: &Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         for p in $(cat {d}/pids 2>/dev/null); do kill $p 2>/dev/null; done; \
         for i in $(seq 1 40); do alive=0; for p in $(cat {d}/pids 2>/dev/null); do kill -0 $p 2>/dev/null && alive=1; done; [ $alive = 0 ] && break; sleep 0.25; done; \
         for p in $(cat {d}/pids 2>/dev/null); do kill -9 $p 2>/dev/null; done; \
         awk -v d={d}/ 'index($2, d) == 1 {{ print $2 }}' /proc/mounts | xargs -r -n1 umount -l 2>/dev/null; \
         for f in $(cat {d}/cleanup-paths 2>/dev/null); do rm -rf \"$f\"; done; \
         [ -s {d}/cleanup-hosts ] && flock {lock} sh -c 't=/etc/hosts.pb-{pid}; grep -vxF -f {d}/cleanup-hosts /etc/hosts > $t; [ $? -le 1 ] || exit; chmod --reference=/etc/hosts $t; mv -f $t /etc/hosts || cat $t > /etc/hosts; rm -f $t'; \
         rm -rf {d}",
        pid = std::process::id(),
        d = dir.display(),
        lock = HOSTS_LOCK,
    );
    // Not waited for: it outlives this process on purpose.
    #[allow(clippy::zombie_processes)]
    Command::new("/bin/sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start watchdog");
}

/// Lists `pid` for the watchdog to stop when the test binary exits.
pub fn remember_pid(pid: u32) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root().join("pids"))
        .expect("pids file");
    writeln!(f, "{pid}").expect("write pid");
}

/// The shared docker daemon.
pub struct Dockerd {
    /// `unix://...`, for `DOCKER_HOST`.
    pub host: String,
}

/// The docker daemon of this test binary, started on first use.
pub fn dockerd() -> &'static Dockerd {
    static DOCKERD: OnceLock<Dockerd> = OnceLock::new();
    DOCKERD.get_or_init(|| {
        let dir = root().join("d");
        // Not waited for: the watchdog stops it after this process exits.
        #[allow(clippy::zombie_processes)]
        let (d, _child) = launch_dockerd(&dir);
        d
    })
}

/// A docker daemon of one test's own, to stop and start at will.
pub struct PrivateDockerd {
    /// `unix://...`, for `DOCKER_HOST`.
    pub host: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateDockerd {
    /// Starts one and waits until it answers.
    pub fn start() -> PrivateDockerd {
        let dir = fresh_dir("dockerd");
        let (d, child) = launch_dockerd(&dir);
        PrivateDockerd {
            host: d.host,
            dir,
            child: Some(child),
        }
    }

    /// Stops it and its containerd with `signal` (`TERM`, `KILL`) and waits
    /// until it is gone.
    pub fn stop(&mut self, signal: &str) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg("--")
                .arg(format!("-{}", child.id()))
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same socket and data, after removing the pid
    /// file and runtime state a killed daemon leaves (as a reboot would).
    pub fn restart(&mut self) {
        self.stop("TERM");
        let _ = fs::remove_file(self.dir.join("dockerd.pid"));
        let _ = fs::remove_dir_all(self.dir.join("exec"));
        let (_, child) = launch_dockerd(&self.dir);
        self.child = Some(child);
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        self.stop("TERM");
    }
}

/// Starts a dockerd whose files live in `dir` and waits until it answers.
fn launch_dockerd(dir: &Path) -> (Dockerd, Child) {
    fs::create_dir_all(dir).unwrap();
    let sock = dir.join("docker.sock");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dockerd.log"))
        .unwrap();
    let mut child = Command::new("dockerd")
        .args([
            "--storage-driver=vfs",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
        ])
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("dockerd.pid"))
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("dockerd must be installed (Debian package docker.io) and the tests run as root");
    remember_pid(child.id());
    let d = Dockerd {
        host: format!("unix://{}", sock.display()),
    };
    let started = Instant::now();
    loop {
        let ok = docker_cmd(&d.host)
            .args(["version", "--format", "{{.Server.Version}}"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "dockerd exited with {status}; its log ends:\n{}",
                tail(&dir.join("dockerd.log"), 10)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "dockerd did not come up; see {}",
            dir.join("dockerd.log").display()
        );
        thread::sleep(Duration::from_millis(200));
    }
    (d, child)
}

fn docker_cmd(host: &str) -> Command {
    let mut c = Command::new("docker");
    c.env("DOCKER_HOST", host)
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CLI_HINTS", "false");
    c
}

/// Runs docker against the shared daemon and returns its stdout; panics on failure.
pub fn docker(args: &[&str]) -> String {
    setup(
        docker_cmd(&dockerd().host).args(args),
        &format!("docker {args:?}"),
    )
}

/// Runs a command that prepares a test (building or pushing a test image),
/// trying again twice when it fails: a failure there is the environment's,
/// not picture-book's. Panics with everything known when all tries fail.
fn setup(cmd: &mut Command, what: &str) -> String {
    let mut failures = Vec::new();
    for attempt in 1..=3 {
        let out = cmd.output().expect("run docker");
        if out.status.success() {
            if !failures.is_empty() {
                eprintln!("{what} succeeded on try {attempt} after: {failures:#?}");
            }
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        failures.push(format!(
            "{}; stdout: {}; stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "{what} failed 3 times: {failures:#?}\ndockerd log (last lines):\n{}",
        tail(&root().join("d/dockerd.log"), 30)
    );
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let log = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs docker against the shared daemon once, for a test that judges its
/// outcome (a program run in a container).
pub fn docker_once(args: &[&str]) -> Output {
    docker_cmd(&dockerd().host)
        .args(args)
        .output()
        .expect("run docker")
}

/// Runs docker against the shared daemon; true when it succeeded.
pub fn docker_ok(args: &[&str]) -> bool {
    docker_cmd(&dockerd().host)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A port on 127.0.0.1 nobody listens on right now.
/// Ports of registries a test stopped and may start again: no other test
/// of this binary is given them meanwhile.
static RESERVED: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A listener on 127.0.0.1 on a port that is not reserved.
pub fn listen() -> TcpListener {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if !RESERVED.lock().unwrap().contains(&port) {
            return listener;
        }
    }
}

/// A port free now, and not reserved.
pub fn free_port() -> u16 {
    listen().local_addr().unwrap().port()
}

/// A distribution registry on 127.0.0.1.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    dir: PathBuf,
    child: Child,
    creds: Option<(String, String)>,
}

impl Registry {
    /// The user and password it requires, when it requires some.
    pub fn creds(&self) -> Option<(&str, &str)> {
        self.creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// An anonymous registry.
    pub fn start() -> Registry {
        Registry::launch(None, true)
    }

    /// An anonymous registry that refuses deletes (`storage.delete.enabled`
    /// left out, as by default).
    pub fn without_deletes() -> Registry {
        Registry::launch(None, false)
    }

    /// A registry that requires `user`/`pass` (htpasswd, bcrypt).
    pub fn with_auth(user: &str, pass: &str) -> Registry {
        Registry::launch(Some((user.to_string(), pass.to_string())), true)
    }

    fn launch(creds: Option<(String, String)>, deletes: bool) -> Registry {
        let dir = fresh_dir("registry");
        let port = free_port();
        let delete = if deletes {
            "  delete:\n    enabled: true\n"
        } else {
            ""
        };
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n{delete}http:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        if let Some((user, pass)) = &creds {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd (apache2-utils) must be installed");
            fs::write(dir.join("htpasswd"), &out.stdout).unwrap();
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        fs::write(dir.join("config.yml"), cfg).unwrap();
        let child = Registry::serve(&dir);
        let reg = Registry {
            host: format!("127.0.0.1:{port}"),
            dir,
            child,
            creds,
        };
        reg.wait_until_up();
        reg
    }

    fn serve(dir: &Path) -> Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("registry.log"))
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        remember_pid(child.id());
        child
    }

    fn wait_until_up(&self) {
        let started = Instant::now();
        while self.get("/v2/").is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "registry {} did not come up",
                self.host
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it (SIGKILL, as a crash or a power cut would).
    pub fn stop(&mut self) {
        let port = self.host.rsplit_once(':').unwrap().1.parse().unwrap();
        RESERVED.lock().unwrap().push(port);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port with the same storage.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Registry::serve(&self.dir);
        self.wait_until_up();
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into()
    }

    /// GETs `path` with the registry's credentials; returns status and body.
    pub fn get(&self, path: &str) -> Result<(u16, String), ureq::Error> {
        self.fetch(path).map(|(status, _, body)| (status, body))
    }

    /// The manifest digest of `repo:tag`, or None when absent.
    pub fn manifest_digest(&self, repo: &str, tag: &str) -> Option<String> {
        let (status, digest, _) = self
            .fetch(&format!("/v2/{repo}/manifests/{tag}"))
            .expect("registry answers");
        if status == 200 { digest } else { None }
    }

    /// GETs `path`; returns status, `Docker-Content-Digest` and body.
    fn fetch(&self, path: &str) -> Result<(u16, Option<String>, String), ureq::Error> {
        let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
        let mut req = Registry::agent()
            .get(&format!("http://{}{path}", self.host))
            .header("Accept", accept);
        if let Some((u, p)) = &self.creds {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req = req.header("Authorization", &format!("Basic {token}"));
        }
        let mut resp = req.call()?;
        let status = resp.status().as_u16();
        let digest = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        Ok((status, digest, resp.body_mut().read_to_string()?))
    }

    /// The image config digest (image ID) of `repo:tag`, or None when absent.
    pub fn config_digest(&self, repo: &str, tag: &str) -> Option<String> {
        let (status, body) = self
            .get(&format!("/v2/{repo}/manifests/{tag}"))
            .expect("registry answers");
        if status == 404 {
            return None;
        }
        assert_eq!(status, 200, "manifest {repo}:{tag}: {body}");
        let manifest: serde_json::Value = serde_json::from_str(&body).unwrap();
        Some(
            manifest["config"]["digest"]
                .as_str()
                .expect("single-platform manifest")
                .to_string(),
        )
    }

    /// The repositories the registry holds.
    pub fn catalog(&self) -> Vec<String> {
        let (status, body) = self.get("/v2/_catalog").expect("registry answers");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    }

    /// A DockerConfigJSON for this registry with the given credentials.
    pub fn auth_json(&self, user: &str, pass: &str) -> String {
        auths(&self.host, user, pass)
    }

    /// Builds an image of `layers` random layers, pushes it here as
    /// `repo:tag`, removes it from the daemon, and returns its config digest.
    pub fn push_image(&self, repo: &str, tag: &str, layers: usize) -> String {
        let name = format!("{}/{repo}:{tag}", self.host);
        let ctx = fresh_dir("build");
        let mut dockerfile = String::from("FROM scratch\n");
        for i in 0..layers {
            let mut data = vec![0u8; 64 * 1024];
            fs::File::open("/dev/urandom")
                .unwrap()
                .read_exact(&mut data)
                .unwrap();
            fs::write(ctx.join(format!("f{i}")), &data).unwrap();
            dockerfile.push_str(&format!("COPY f{i} /f{i}\n"));
        }
        fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        docker(&["build", "-q", "-t", &name, ctx.to_str().unwrap()]);
        let id = docker(&["image", "inspect", "--format", "{{.Id}}", &name])
            .trim()
            .to_string();
        let mut push = docker_cmd(&dockerd().host);
        if let Some((u, p)) = &self.creds {
            let cfg = fresh_dir("push-config");
            fs::write(cfg.join("config.json"), self.auth_json(u, p)).unwrap();
            push.arg("--config").arg(&cfg);
        }
        setup(push.args(["push", &name]), &format!("docker push {name}"));
        docker(&["rmi", &name]);
        id
    }

    /// The registry's log (access log included).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// The requests in the access log, as (method, path, user agent).
    pub fn requests(&self) -> Vec<(String, String, String)> {
        self.log()
            .lines()
            .filter(|l| l.starts_with("127.0.0.1 - "))
            .filter_map(|l| {
                let mut quoted = l.split('"').skip(1).step_by(2);
                let request = quoted.next()?;
                let agent = quoted.nth(1).unwrap_or_default();
                let mut parts = request.split(' ');
                Some((
                    parts.next()?.to_string(),
                    parts.next()?.to_string(),
                    agent.to_string(),
                ))
            })
            .collect()
    }

    /// How many requests `picture-book` (`ours`) or docker sent with this
    /// method and a path starting with `prefix`.
    pub fn count(&self, method: &str, prefix: &str, ours: bool) -> usize {
        self.requests()
            .iter()
            .filter(|(m, p, agent)| {
                m == method && p.starts_with(prefix) && agent.starts_with("picture-book/") == ours
            })
            .count()
    }
}

impl Registry {
    /// Deletes the manifest `repo:tag` points at (and so every tag on it).
    pub fn delete(&self, repo: &str, tag: &str) {
        let digest = self.manifest_digest(repo, tag).expect("the tag exists");
        let url = format!("http://{}/v2/{repo}/manifests/{digest}", self.host);
        let resp = Registry::agent().delete(&url).call().unwrap();
        assert_eq!(resp.status().as_u16(), 202, "DELETE {url}");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory holding a config file and syncer scripts for one test.
pub struct Workspace {
    /// The directory.
    pub dir: PathBuf,
}

impl Workspace {
    /// A fresh workspace.
    pub fn new() -> Workspace {
        Workspace {
            dir: fresh_dir("ws"),
        }
    }

    /// Writes an executable script `name` with `body` (a shell script).
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A script that prints `images`, one per line.
    pub fn list_script(&self, name: &str, images: &[String]) -> PathBuf {
        let body: String = images.iter().map(|i| format!("echo '{i}'\n")).collect();
        self.script(name, &body)
    }

    /// Writes a file.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    /// Writes a file only its owner may read, as files holding secrets must be.
    pub fn secret_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.file(name, text);
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        path
    }

    /// Writes `config.yaml`.
    pub fn config(&self, yaml: &str) -> PathBuf {
        self.file("config.yaml", yaml)
    }

    /// The private docker configuration directories picture-book has in
    /// this workspace's `$XDG_RUNTIME_DIR` now.
    pub fn private_dirs(&self) -> Vec<PathBuf> {
        fs::read_dir(self.dir.join("run"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// A run of picture-book with this workspace as working directory.
    pub fn run(&self) -> Run {
        Run::new(&self.dir)
    }

    /// `picture-book ARGS` run to the end here without a docker daemon (the
    /// native engine, layouts).
    pub fn run_without_daemon(&self, args: &[&str]) -> Outcome {
        self.run().without_daemon().args(args).run()
    }

    /// A run of picture-book as the last argument of `wrapper` (`strace
    /// -f -o FILE`, say), with this workspace as working directory.
    pub fn run_under(&self, wrapper: &[&str]) -> Run {
        Run::under(&self.dir, wrapper)
    }
}

/// What the binary did.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Outcome {
    /// stdout and stderr together, for searching.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// stdout as JSON (of `--json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// A configuration with one registry, `target`, repository `mirror`, the
/// script `sync.sh`, and `extra` keys (indented as registry keys).
pub fn single(target: &Registry, extra: &str) -> String {
    format!(
        "registries:\n  - hostname: '{}'\n    repository: mirror\n    syncerScript: sync.sh\n{extra}",
        target.host
    )
}

/// A builder for one run of the real binary.
pub struct Run {
    cmd: Command,
    with_daemon: bool,
}

impl Run {
    fn new(dir: &Path) -> Run {
        Run::under(dir, &[])
    }

    /// A run of the binary as the last argument of `wrapper`, if any.
    fn under(dir: &Path, wrapper: &[&str]) -> Run {
        let binary = env!("CARGO_BIN_EXE_picture-book");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        // Every request not to loopback goes to a closed local port, so no
        // test reaches for the internet, not even for a DNS lookup.
        let runtime = dir.join("run");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&runtime)
            .unwrap();
        cmd.current_dir(dir)
            .env_remove("PICTURE_BOOK_CONFIG")
            .env("XDG_RUNTIME_DIR", runtime)
            .env("DOCKER_CONFIG", dir.join(".docker"))
            .env("ALL_PROXY", "http://127.0.0.1:9")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .arg("--state-dir")
            .arg(dir.join("state"))
            .stdin(Stdio::null());
        Run {
            cmd,
            with_daemon: true,
        }
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, args: I) -> Run {
        self.cmd.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Run {
        self.cmd.env(key, value);
        self
    }

    /// Does not point DOCKER_HOST at the shared daemon (nor start it).
    pub fn without_daemon(mut self) -> Run {
        self.with_daemon = false;
        self
    }

    /// Runs to the end (or panics after RUN_LIMIT).
    pub fn run(self) -> Outcome {
        self.spawn().wait(RUN_LIMIT)
    }

    /// Starts the binary and returns at once.
    pub fn spawn(mut self) -> Running {
        if self.with_daemon {
            self.cmd.env("DOCKER_HOST", &dockerd().host);
        }
        let started = Instant::now();
        let child = self
            .cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run picture-book");
        let pid = child.id();
        Running {
            pid,
            started,
            waiter: Some(thread::spawn(move || child.wait_with_output())),
        }
    }
}

/// A running picture-book.
pub struct Running {
    /// Its process id.
    pub pid: u32,
    started: Instant,
    waiter: Option<thread::JoinHandle<std::io::Result<Output>>>,
}

impl Running {
    /// Sends `signal` (`TERM`, `HUP`, `INT`, `KILL`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.pid);
    }

    /// True while it runs.
    pub fn is_running(&self) -> bool {
        self.waiter.as_ref().is_some_and(|w| !w.is_finished())
    }

    /// Waits for it to end; kills it and panics when that takes longer than
    /// `limit` from now.
    pub fn wait(mut self, limit: Duration) -> Outcome {
        let waiter = self.waiter.take().unwrap();
        let since = Instant::now();
        while !waiter.is_finished() {
            if since.elapsed() > limit {
                let _ = Command::new("kill")
                    .args(["-9", &self.pid.to_string()])
                    .status();
                panic!("picture-book ran longer than {limit:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
        let out: Output = waiter.join().unwrap().expect("wait for picture-book");
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = Command::new("kill")
                .args(["-9", &self.pid.to_string()])
                .status();
        }
    }
}

/// Processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

/// Waits up to `limit` for `cond`; false if it never held.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    cond()
}
