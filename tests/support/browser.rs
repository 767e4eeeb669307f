//! A real browser for tests: headless Chromium driven through chromedriver,
//! over the W3C WebDriver protocol (a handful of JSON calls, spoken here
//! with the hyper client the harness already uses).
//!
//! Each [`Browser`] owns its chromedriver, started on a free port in its own
//! process group with a fresh profile directory; dropping it kills the group
//! (chromedriver and every Chromium process) and removes the profile.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use super::system::free_port;

/// W3C name of the key that holds an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Bound on one WebDriver call; page loads on a busy 2-core machine included.
const CALL_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on chromedriver becoming ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where screenshots go: `target/browser-journey/`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("browser-journey")
}

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    profile: PathBuf,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Screenshot names start with this, so tests do not overwrite each other's.
    prefix: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started,
        // even when the test failed before `quit`.
        let pid = self.driver.id();
        let killed = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !killed {
            let _ = self.driver.kill();
        }
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium
    /// session; screenshots are named `{prefix}-NN-step.png`.
    pub async fn start(chromedriver: &Path, chromium: &Path, prefix: &str) -> Browser {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http();
        // A port that was free a moment ago can be taken before chromedriver
        // binds it; then chromedriver exits and another port is tried.
        for attempt in 1..=5 {
            let port = free_port();
            let log =
                std::fs::File::create(dir.join(format!("{prefix}-chromedriver.log"))).unwrap();
            let mut cmd = Command::new(chromedriver);
            cmd.arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let driver = cmd.spawn().expect("chromedriver starts");
            let profile = std::env::temp_dir().join(format!(
                "sessiongate-chromium-{}-{port}",
                std::process::id()
            ));
            let mut browser = Browser {
                driver,
                base: format!("http://127.0.0.1:{port}"),
                session: String::new(),
                profile,
                client: client.clone(),
                prefix: prefix.to_owned(),
            };
            if browser.wait_ready().await {
                browser.new_session(chromium).await;
                return browser;
            }
            eprintln!("chromedriver attempt {attempt} on port {port} did not come up");
        }
        panic!("chromedriver did not start; see {}", dir.display());
    }

    /// Polls `/status` until chromedriver is ready, or it exited, or the deadline passed.
    async fn wait_ready(&mut self) -> bool {
        let until = Instant::now() + START_TIMEOUT;
        while Instant::now() < until {
            if self.driver.try_wait().ok().flatten().is_some() {
                return false;
            }
            if let Ok(v) = self.call(Method::GET, "/status", None).await {
                if v["ready"] == true {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    async fn new_session(&mut self, chromium: &Path) {
        let _ = std::fs::remove_dir_all(&self.profile);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"pageLoad": 60_000, "script": 30_000, "implicit": 0},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", self.profile.display()),
                    "--window-size=1100,900",
                    "--lang=en-US",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--disable-features=Translate,MediaRouter,OptimizationHints",
                ],
            },
        }}});
        let v = self
            .call(Method::POST, "/session", Some(caps))
            .await
            .unwrap_or_else(|e| panic!("new WebDriver session: {e}"));
        self.session = v["sessionId"].as_str().expect("sessionId").to_owned();
    }

    /// One WebDriver call; `Ok(value)` or `Err` with the driver's error.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json; charset=utf-8")
            .body(Full::new(body))
            .unwrap();
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(v["value"].clone())
            } else {
                Err(format!("{status}: {}", v["value"]))
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer in {CALL_TIMEOUT:?}")))
    }

    /// A call in this session that must succeed.
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    /// Navigates and waits for the page (and any redirects) to load.
    pub async fn goto(&self, url: &str) {
        self.cmd(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The address bar.
    pub async fn url(&self) -> String {
        self.cmd(Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The document title.
    pub async fn title(&self) -> String {
        self.cmd(Method::GET, "/title", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The current DOM, serialized.
    pub async fn source(&self) -> String {
        self.cmd(Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .cmd(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let id = self.element(css).await;
        self.cmd(Method::GET, &format!("/element/{id}/text"), None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Clicks the first element matching `css`, as a user would.
    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.cmd(
            Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Every cookie the browser would send to the current page, HttpOnly ones included.
    pub async fn cookies(&self) -> Vec<Value> {
        self.cmd(Method::GET, "/cookie", None)
            .await
            .as_array()
            .unwrap()
            .clone()
    }

    /// Sets a cookie for the current page's host, as a copy of a stolen one would be.
    pub async fn add_cookie(&self, name: &str, value: &str) {
        let cookie = json!({"cookie": {"name": name, "value": value, "path": "/"}});
        self.cmd(Method::POST, "/cookie", Some(cookie)).await;
    }

    /// Polls the address bar until `pred` holds; panics with the last URL after `deadline`.
    pub async fn wait_for_url(&self, deadline: Duration, pred: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + deadline;
        loop {
            let url = self.url().await;
            if pred(&url) {
                return url;
            }
            assert!(Instant::now() < until, "still at {url} after {deadline:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls the title until it is `want`.
    pub async fn wait_for_title(&self, deadline: Duration, want: &str) {
        let until = Instant::now() + deadline;
        loop {
            let title = self.title().await;
            if title == want {
                return;
            }
            assert!(
                Instant::now() < until,
                "title still {title:?}, not {want:?}, after {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves the viewport as `target/browser-journey/{prefix}-{name}.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd(Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = screenshot_dir().join(format!("{}-{name}.png", self.prefix));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the session (Chromium exits); dropping the browser then stops chromedriver.
    pub async fn quit(self) {
        let path = format!("/session/{}", self.session);
        let _ = self.call(Method::DELETE, &path, None).await;
    }
}
