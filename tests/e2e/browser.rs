//! A real browser for the tests: Debian's `chromium`, headless, driven by
//! `chromedriver` over the W3C WebDriver HTTP API with ureq. It opens pages,
//! reads what they show, clicks and types as a user would, takes
//! screenshots and hands over the requests it sent (from chromium's
//! performance log). What the pages should show is the tests' business.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{eventually, free_port, fresh_dir, remember_pid};

/// The key WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Enter key, as WebDriver spells it in typed text.
pub const ENTER: &str = "\u{E007}";

/// A headless chromium with one WebDriver session.
pub struct Browser {
    driver: Child,
    session: String,
    base: String,
    agent: ureq::Agent,
}

impl Browser {
    /// Starts chromedriver and a headless chromium `width` × `height`
    /// pixels, logging its network requests.
    pub fn start(width: u32, height: u32) -> Browser {
        let dir = fresh_dir("browser");
        let port = free_port();
        let log = fs::File::create(dir.join("chromedriver.log")).unwrap();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed");
        remember_pid(driver.id());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            driver,
            session: String::new(),
            base,
            agent,
        };
        let ready = eventually(Duration::from_secs(20), || {
            browser.request("GET", "/status", None).1["ready"] == true
        });
        assert!(ready, "chromedriver never became ready");
        let options = json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--no-first-run",
                     format!("--window-size={width},{height}"),
                     format!("--user-data-dir={}", dir.join("profile").display())],
        });
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"performance": "ALL", "browser": "ALL"},
        }}});
        let (status, answer) = browser.request("POST", "/session", Some(capabilities));
        assert_eq!(status, 200, "no WebDriver session: {answer}");
        browser.session = answer["sessionId"].as_str().unwrap().to_string();
        browser
    }

    /// A WebDriver request; its status and its `value`.
    fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let answer = match body {
            Some(body) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
            None if method == "DELETE" => self.agent.delete(&url).call(),
            None => self.agent.get(&url).call(),
        };
        let Ok(mut answer) = answer else {
            return (0, Value::Null);
        };
        let text = answer.body_mut().read_to_string().unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (answer.status().as_u16(), value["value"].clone())
    }

    /// A request in the session that must succeed; its `value`.
    fn command(&self, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let (status, value) =
            self.request(if body.is_some() { "POST" } else { "GET" }, &path, body);
        assert_eq!(status, 200, "WebDriver {path}: {value}");
        value
    }

    /// Opens `url`.
    pub fn open(&self, url: &str) {
        self.command("/url", Some(json!({ "url": url })));
    }

    /// Resizes the window.
    pub fn resize(&self, width: u32, height: u32) {
        self.command(
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// The element `css` selects, if there is one now.
    fn find(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session);
        let body = json!({"using": "css selector", "value": css});
        let (status, value) = self.request("POST", &path, Some(body));
        (status == 200).then(|| value[ELEMENT].as_str().unwrap().to_string())
    }

    /// The element `css` selects, waiting up to 20 s for it.
    fn element(&self, css: &str) -> String {
        let mut found = None;
        eventually(Duration::from_secs(20), || {
            found = self.find(css);
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no element '{css}' in:\n{}", self.text("body")))
    }

    /// The text `css` shows as rendered (empty when there is no such
    /// element or it is hidden).
    pub fn text(&self, css: &str) -> String {
        let Some(id) = self.find(css) else {
            return String::new();
        };
        let path = format!("/session/{}/element/{id}/text", self.session);
        let (_, value) = self.request("GET", &path, None);
        value.as_str().unwrap_or_default().to_string()
    }

    /// Waits up to `limit` until `css` shows `wanted`; panics with what it
    /// shows otherwise.
    pub fn wait_for(&self, css: &str, wanted: &str, limit: Duration) -> String {
        let mut shown = String::new();
        let seen = eventually(limit, || {
            shown = self.text(css);
            shown.contains(wanted)
        });
        assert!(seen, "'{css}' never showed '{wanted}'; it shows:\n{shown}");
        shown
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.command(&format!("/element/{id}/click"), Some(json!({})));
    }

    /// Types `text` into the element `css` selects (keys, as a user would).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.command(
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub fn script(&self, script: &str) -> Value {
        self.command("/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let png = self.command("/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap()
    }

    /// The messages of chromium's log `kind` since the last call.
    fn log(&self, kind: &str) -> Vec<String> {
        let entries = self.command("/se/log", Some(json!({ "type": kind })));
        entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap().to_string())
            .collect()
    }

    /// What the pages wrote to the console, and the errors they met
    /// (a script that failed, a policy that refused something), since the
    /// last call.
    pub fn console(&self) -> Vec<String> {
        self.log("browser")
    }

    /// URL and `Authorization` header of every request the page sent since
    /// the last call.
    pub fn requests(&self) -> Vec<(String, Option<String>)> {
        let mut sent = Vec::new();
        for entry in self.log("performance") {
            let message: Value = serde_json::from_str(&entry).unwrap();
            let message = &message["message"];
            if message["method"] != "Network.requestWillBeSent" {
                continue;
            }
            let request = &message["params"]["request"];
            let authorization = request["headers"]["Authorization"]
                .as_str()
                .map(String::from);
            sent.push((request["url"].as_str().unwrap().to_string(), authorization));
        }
        sent
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            self.request("DELETE", &path, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
