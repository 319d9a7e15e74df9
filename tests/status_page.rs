//! The status page at `/` as a person's browser uses it: the page and its assets come from the
//! binary, the event stream delivers changes, logging in sets a strict cookie, and a mutation
//! without a session, without the CSRF token or from another origin is refused and changes
//! nothing. Then the real thing: headless Chromium (`tests/browser/status_page.js`, playwright-core
//! driving Debian's chromium) approves a pending node and sees it READY without a reload.
//!
//! The browser test finds playwright-core through `CORTEX_TEST_NODE_MODULES` (scripts/test.sh
//! installs it outside the clone and sets it), else `${XDG_CACHE_HOME:-~/.cache}/cortex-test-browser`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{fast_liveness, join_token, node_state};
use crate::harness::page::{login, send, Events};
use crate::harness::{capable, eventually, have, http, Agent, Node};

/// A coordinator with one agent waiting for approval: (coordinator, agent, its node id).
fn with_pending(sb: &std::path::Path, name: &str) -> (Node, Agent, u64) {
    let coord = Node::start_with(sb, &sb.join("c1"), &[], fast_liveness);
    let token = join_token(&coord, &[]);
    let agent = Agent::start(sb, &sb.join(name), &["--token", &token, "--node-name", name]);
    let id = eventually(Duration::from_secs(30), "a pending node", || {
        let nodes = http::get(&coord.http, "/api/v1/nodes").ok()?.json();
        nodes["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["state"] == "pending" && n["name"] == name)
            .and_then(|n| n["id"].as_u64())
    });
    (coord, agent, id)
}

fn admin_token(node: &Node) -> String {
    std::fs::read_to_string(node.token_file())
        .expect("admin token")
        .trim()
        .to_string()
}

#[test]
fn the_page_and_its_assets_come_from_the_binary() {
    let sb = tempfile::tempdir().expect("tempdir");
    let node = Node::start(sb.path(), &sb.path().join("n1"));
    let r = send(&node.http, "GET", "/", &[], None);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html")));
    assert!(r.body.contains("<script src=\"/ui/app.js\""), "{}", r.body);
    let csp = r.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(
        !r.body.contains("https://"),
        "the page must not load anything from the internet"
    );
    for (asset, kind) in [
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let r = send(&node.http, "GET", &format!("/ui/{asset}"), &[], None);
        assert_eq!(r.status, 200, "{asset}");
        assert!(
            r.header("content-type").is_some_and(|c| c.starts_with(kind)),
            "{asset}"
        );
        assert!(
            !r.body.contains("https://"),
            "{asset} must not load anything from the internet"
        );
        // A reload revalidates: same ETag → 304.
        let etag = r.header("etag").expect("etag").to_string();
        let again = send(
            &node.http,
            "GET",
            &format!("/ui/{asset}"),
            &[("If-None-Match", &etag)],
            None,
        );
        assert_eq!(again.status, 304, "{asset}");
    }
    assert_eq!(send(&node.http, "GET", "/ui/nothing.js", &[], None).status, 404);

    let snap = send(&node.http, "GET", "/ui/snapshot", &[], None).json();
    assert_eq!(snap["cluster"]["raft_role"], "leader");
    assert_eq!(snap["cluster"]["health"], "healthy");
    assert_eq!(snap["nodes"].as_array().map(Vec::len), Some(1));
    assert!(snap["events"].as_array().is_some_and(|e| !e.is_empty()));
}

#[test]
fn the_event_stream_sends_a_snapshot_then_what_changed() {
    let sb = tempfile::tempdir().expect("tempdir");
    let node = Node::start(sb.path(), &sb.path().join("n1"));
    let mut events = Events::open(&node.http);
    let first = events.next(Duration::from_secs(10)).expect("a first event");
    assert_eq!(first.event, "snapshot");
    let seq = first.data["seq"].as_u64().expect("seq");
    assert_eq!(first.data["nodes"][0]["state"], "ready");

    // A change in the cluster (a label) arrives as a diff on top of that snapshot.
    let started = Instant::now();
    node.cli_ok(&["node", "label", &node.node_id().to_string(), "rack=r7"]);
    let diff = events.until(Duration::from_secs(10), "the new label", |e| {
        e.event == "diff" && e.data["nodes"][0]["labels"]["rack"] == "r7"
    });
    eprintln!(
        "label seen on the stream {:?} after the CLI started",
        started.elapsed()
    );
    assert!(diff.data["base"].as_u64().expect("base") >= seq);
    assert!(diff.data["seq"].as_u64() > diff.data["base"].as_u64());
}

#[test]
fn logging_in_sets_a_strict_http_only_cookie() {
    let sb = tempfile::tempdir().expect("tempdir");
    let node = Node::start(sb.path(), &sb.path().join("n1"));

    let bad = login(&node.http, "cxt_00000000_not-a-real-token");
    assert_eq!(bad.reply.status, 401, "{}", bad.reply.body);
    assert!(bad.reply.header("set-cookie").is_none());

    let ok = login(&node.http, &admin_token(&node));
    assert_eq!(ok.reply.status, 200, "{}", ok.reply.body);
    let set = ok.reply.header("set-cookie").expect("Set-Cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(ok.cookie.starts_with("cortex_session=") && ok.csrf.len() == 64);
    assert_eq!(ok.reply.json()["scope"], "admin");

    let who = send(&node.http, "GET", "/ui/session", &[("Cookie", &ok.cookie)], None).json();
    assert_eq!(who["logged_in"], true);
    assert_eq!(who["csrf"], ok.csrf.as_str());
    let nobody = send(&node.http, "GET", "/ui/session", &[], None).json();
    assert_eq!(nobody["logged_in"], false);

    // A login from another site is refused before the token is looked at.
    let body = serde_json::json!({ "token": admin_token(&node) }).to_string();
    let cross = send(
        &node.http,
        "POST",
        "/ui/login",
        &[
            ("Content-Type", "application/json"),
            ("Origin", "http://evil.example"),
        ],
        Some(&body),
    );
    assert_eq!(cross.status, 403, "{}", cross.body);
    assert!(cross.header("set-cookie").is_none());

    // Logging out ends the session.
    let origin = format!("http://{}", node.http);
    let out = send(
        &node.http,
        "POST",
        "/ui/logout",
        &[("Cookie", &ok.cookie), ("Origin", &origin)],
        None,
    );
    assert_eq!(out.status, 200);
    let who = send(&node.http, "GET", "/ui/session", &[("Cookie", &ok.cookie)], None).json();
    assert_eq!(who["logged_in"], false);
}

#[test]
fn approving_needs_a_session_the_csrf_token_and_scope_operate() {
    let sb = tempfile::tempdir().expect("tempdir");
    let (coord, mut agent, id) = with_pending(sb.path(), "w1");
    let path = format!("/ui/nodes/{id}/approve");
    let origin = format!("http://{}", coord.http);
    let json = ("Content-Type", "application/json");
    let still_pending = || assert_eq!(node_state(&coord, id).as_deref(), Some("pending"));

    // No session at all: 401, nothing changes.
    let r = send(
        &coord.http,
        "POST",
        &path,
        &[json, ("Origin", &origin)],
        Some("{}"),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("log in"));
    still_pending();
    // A made-up cookie is no session either.
    let r = send(
        &coord.http,
        "POST",
        &path,
        &[json, ("Cookie", "cortex_session=00ff"), ("X-Cortex-CSRF", "00ff")],
        Some("{}"),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    still_pending();

    let admin = login(&coord.http, &admin_token(&coord));
    assert_eq!(admin.reply.status, 200);
    // A session but no CSRF header (what a cross-site form would send, were the cookie sent): 403.
    let r = send(
        &coord.http,
        "POST",
        &path,
        &[json, ("Cookie", &admin.cookie)],
        Some("{}"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "csrf");
    // A wrong CSRF token: 403.
    let r = send(
        &coord.http,
        "POST",
        &path,
        &[
            json,
            ("Cookie", &admin.cookie),
            ("X-Cortex-CSRF", &"0".repeat(64)),
        ],
        Some("{}"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // Everything right but sent from another origin: 403.
    let r = send(
        &coord.http,
        "POST",
        &path,
        &[
            json,
            ("Cookie", &admin.cookie),
            ("X-Cortex-CSRF", &admin.csrf),
            ("Origin", "http://evil.example"),
        ],
        Some("{}"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = send(
        &coord.http,
        "POST",
        &path,
        &[
            json,
            ("Cookie", &admin.cookie),
            ("X-Cortex-CSRF", &admin.csrf),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        Some("{}"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    still_pending();

    // A read token logs in but cannot approve: 403 naming the scope.
    let minted = coord.cli_ok(&[
        "-o", "json", "token", "create", "--kind", "api", "--scope", "read",
    ]);
    let minted: serde_json::Value = serde_json::from_str(&minted).expect("token json");
    let reader = login(&coord.http, minted["secret"].as_str().expect("secret"));
    assert_eq!(reader.reply.status, 200, "{}", reader.reply.body);
    let r = send(
        &coord.http,
        "POST",
        &path,
        &[
            json,
            ("Cookie", &reader.cookie),
            ("X-Cortex-CSRF", &reader.csrf),
            ("Origin", &origin),
        ],
        Some("{}"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("operate"), "{}", r.body);
    still_pending();

    // Everything right: approved, and the agent is told.
    let r = send(
        &coord.http,
        "POST",
        &path,
        &[
            json,
            ("Cookie", &admin.cookie),
            ("X-Cortex-CSRF", &admin.csrf),
            ("Origin", &origin),
        ],
        Some("{}"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["node"]["state"], "ready");
    agent.wait_approved(Duration::from_secs(20));
    // Approving twice is a clear conflict, not a crash.
    let r = send(
        &coord.http,
        "POST",
        &path,
        &[
            json,
            ("Cookie", &admin.cookie),
            ("X-Cortex-CSRF", &admin.csrf),
            ("Origin", &origin),
        ],
        Some("{}"),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body.contains("only a pending node can be approved"),
        "{}",
        r.body
    );
    // An unknown action and an unknown node are named.
    let r = send(
        &coord.http,
        "POST",
        &format!("/ui/nodes/{id}/explode"),
        &[json, ("Cookie", &admin.cookie), ("X-Cortex-CSRF", &admin.csrf)],
        Some("{}"),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = send(
        &coord.http,
        "POST",
        "/ui/nodes/no-such-node/drain",
        &[json, ("Cookie", &admin.cookie), ("X-Cortex-CSRF", &admin.csrf)],
        Some("{}"),
    );
    assert_eq!(r.status, 404, "{}", r.body);
}

/// The directory holding `playwright-core`, if installed.
fn node_modules() -> Option<PathBuf> {
    let dir = match std::env::var_os("CORTEX_TEST_NODE_MODULES") {
        Some(d) => PathBuf::from(d),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            cache.join("cortex-test-browser/node_modules")
        }
    };
    dir.join("playwright-core/package.json").is_file().then_some(dir)
}

#[test]
fn approving_in_headless_chromium_turns_the_node_ready_without_a_reload() {
    let modules = node_modules();
    if !capable(have("node"), "Node.js (`node`, to drive playwright-core)")
        || !capable(
            std::path::Path::new("/usr/bin/chromium").is_file(),
            "Debian's chromium at /usr/bin/chromium (apt package `chromium`)",
        )
        || !capable(
            modules.is_some(),
            "playwright-core in the test cache: run scripts/test.sh (it installs it) or set CORTEX_TEST_NODE_MODULES",
        )
    {
        return;
    }
    let Some(modules) = modules else { return };
    let sb = tempfile::tempdir().expect("tempdir");
    let (coord, mut agent, id) = with_pending(sb.path(), "w1");
    // Screenshots go to a temporary directory (kept with CORTEX_TEST_SCREENSHOTS=DIR).
    let shots = std::env::var_os("CORTEX_TEST_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| sb.path().join("screenshots"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/browser/status_page.js");
    let out = Command::new("node")
        .arg(script)
        .arg("--url")
        .arg(format!("http://{}/", coord.http))
        .arg("--token-file")
        .arg(coord.token_file())
        .args(["--pending", "w1", "--out"])
        .arg(&shots)
        .env("NODE_PATH", &modules)
        .env("HOME", sb.path())
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "the browser test failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}\ncoordinator stderr:\n{}",
        out.status,
        coord.stderr()
    );
    eprintln!("{}", stdout.trim());
    assert!(shots.join("status-page.png").is_file(), "a screenshot was taken");
    // What the page showed is what the cluster holds.
    assert_eq!(node_state(&coord, id).as_deref(), Some("ready"));
    agent.wait_approved(Duration::from_secs(20));
}
