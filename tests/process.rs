//! No process the server started outlives the proxy, however the session ends: the server
//! exits on its own, the client closes stdin, or the proxy gets SIGTERM. Through the real
//! binary, with a wrapper that starts a background `sleep` and then execs the example server.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::gateway::{ALICE_KEY, Gateway, raw_session};
use common::{LineClient, TestStore, call_line, example_server};
use serde_json::{Value, json};

const GRACE_MS: u64 = 200;

/// The proxy in front of `sh -c '<background> & echo $! > pidfile; exec example-server'`.
fn wrapped(store: &TestStore, background: &str) -> (LineClient, std::path::PathBuf) {
    let server = format!("'{}'", example_server().display());
    wrapped_server(store, background, &server)
}

/// The proxy in front of `sh -c '<background> & echo $! > pidfile; exec <server>'`.
fn wrapped_server(
    store: &TestStore,
    background: &str,
    server: &str,
) -> (LineClient, std::path::PathBuf) {
    let pidfile = store.dir.path().join("background.pid");
    let script = format!(
        "{background} & echo $! > '{}'; exec {server}",
        pidfile.display()
    );
    let mut command = store.proxy_command(&["sh", "-c", &script]);
    command.stderr(std::process::Stdio::piped());
    (LineClient::spawn(command), pidfile)
}

/// The background process's pid, once the wrapper has written it.
async fn background_pid(pidfile: &Path) -> i32 {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(pidfile)
            && let Ok(pid) = text.trim().parse()
        {
            assert!(running(pid), "the background process did not start");
            return pid;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no pid file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `pid` runs (a zombie waiting for its reaper does not).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Fails (after killing it) if `pid` still runs when the proxy has exited.
fn assert_gone(pid: i32) {
    if running(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        panic!("the proxy exited before the background process {pid} ended");
    }
}

/// Waits up to `limit` for `pid` to end; kills it and fails the test if it does not.
async fn assert_ends_within(pid: i32, limit: Duration, what: &str) {
    let started = Instant::now();
    while running(pid) {
        if started.elapsed() > limit {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("{what}: the background process {pid} outlived the proxy");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Grace, SIGTERM, grace, SIGKILL, plus room for a loaded machine.
fn limit() -> Duration {
    Duration::from_millis(4 * GRACE_MS) + Duration::from_secs(3)
}

fn store() -> TestStore {
    TestStore::new(&format!("[limits]\nshutdown_grace_ms = {GRACE_MS}\n"))
}

#[tokio::test]
async fn what_the_server_started_ends_when_the_server_exits_on_its_own() {
    let store = store();
    let (mut c, pidfile) = wrapped(&store, "sleep 600");
    c.initialize().await;
    let pid = background_pid(&pidfile).await;
    // The server exits by itself, mid-call; the client keeps its end open.
    c.send(&call_line(json!(1), "crash", json!({"status": 3})))
        .await;
    let status = c.wait_exit().await;
    assert_eq!(status.code(), Some(3), "the server's status is passed on");
    assert_ends_within(pid, limit(), "server exited").await;
}

#[tokio::test]
async fn what_the_server_started_ends_when_the_client_closes_stdin() {
    let store = store();
    let (mut c, pidfile) = wrapped(&store, "sleep 600");
    c.initialize().await;
    let pid = background_pid(&pidfile).await;
    let started = Instant::now();
    // The server exits at EOF at once; its background `sleep` would not.
    assert!(c.finish().await.success());
    assert_gone(pid);
    assert!(started.elapsed() < limit(), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn what_the_server_started_in_a_session_of_its_own_ends_too() {
    // Found by a fresh pair of eyes: `setsid` takes a process out of the server's group, so
    // ending the group left it running after the proxy exited.
    for how in ["client closes stdin", "server exits on its own"] {
        let store = store();
        let (mut c, pidfile) = wrapped(&store, "setsid sleep 600");
        c.initialize().await;
        let pid = background_pid(&pidfile).await;
        let sid = |p: i32| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            fields[3].to_string()
        };
        // `$!` is known before `setsid` has made its session: on a loaded machine, wait.
        let started = std::time::Instant::now();
        while sid(pid) != pid.to_string() && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            sid(pid),
            pid.to_string(),
            "the background process leads its own session"
        );
        if how == "client closes stdin" {
            assert!(c.finish().await.success());
        } else {
            c.send(&call_line(json!(1), "crash", json!({"status": 3})))
                .await;
            assert_eq!(c.wait_exit().await.code(), Some(3));
        }
        assert_gone(pid);
    }
}

#[tokio::test]
async fn what_the_server_started_ends_when_the_proxy_gets_sigterm() {
    let store = store();
    let (mut c, pidfile) = wrapped(&store, "sleep 600");
    c.initialize().await;
    let pid = background_pid(&pidfile).await;
    let proxy = nix::unistd::Pid::from_raw(c.child.id().unwrap() as i32);
    nix::sys::signal::kill(proxy, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = c.wait_exit().await;
    assert!(status.code().is_some(), "a clean exit: {status:?}");
    assert_gone(pid);
}

/// helper-68 3: the SDK clients end a stdio server by closing its stdin, then SIGTERM 2 s
/// later, then SIGKILL 2 s after that. The wrapper waited its own grace (3 s) after the EOF and
/// 3 s more after its SIGTERM to the server, so it was SIGKILLed in between, and a server
/// that ignores EOF and SIGTERM, in a process group of its own, ran on for ever. After a
/// signal the wrapper now sends SIGTERM at once and SIGKILL a second later.
#[tokio::test]
async fn a_stubborn_server_does_not_outlive_the_sdk_clients_close_sequence() {
    // The default grace: the sequence is the clients', not the test's.
    let store = TestStore::new("");
    let pidfile = store.dir.path().join("server.pid");
    let script = format!(
        "trap '' TERM; echo $$ > '{}'; '{}'; sleep 600",
        pidfile.display(),
        example_server().display()
    );
    let mut command = store.proxy_command(&["sh", "-c", &script]);
    command.stderr(std::process::Stdio::piped());
    let mut c = LineClient::spawn(command);
    c.initialize().await;
    let pid = background_pid(&pidfile).await;
    let proxy = nix::unistd::Pid::from_raw(c.child.id().unwrap() as i32);
    c.close_input();
    tokio::time::sleep(Duration::from_secs(2)).await;
    nix::sys::signal::kill(proxy, nix::sys::signal::Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = nix::sys::signal::kill(proxy, nix::sys::signal::Signal::SIGKILL);
    let _ = c.wait_exit().await;
    // Room for a loaded machine to deliver the last SIGKILL and reap.
    assert_ends_within(
        pid,
        Duration::from_secs(2),
        "the SDK clients' close sequence",
    )
    .await;
}

/// helper-72 F1: a server that leaves one helper in its group and one in a session of its
/// own (holding its output) exits at EOF with a call in flight. The wrapper waited for the
/// group (cut short by the SDK's SIGTERM at 2 s), then 2 s more for the output to close, so
/// the SDK's SIGKILL at 4 s came first: no end event for the call, and the `setsid`
/// helper ran on. The wait for the output now counts from the server's exit, and after a
/// signal is cut short.
#[tokio::test]
async fn a_helper_holding_the_servers_output_does_not_outlast_the_sdk_close_sequence() {
    let store = TestStore::new("");
    let (mut c, pidfile) = wrapped(&store, "sleep 31.4142 & setsid sleep 600");
    c.initialize().await;
    let pid = background_pid(&pidfile).await;
    c.send(&call_line(
        json!(1),
        "slow",
        json!({"ms": 60_000, "steps": 1}),
    ))
    .await;
    // The call reached the server (its access event is written before it is forwarded).
    let started = Instant::now();
    while store.events().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no access event"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let proxy = nix::unistd::Pid::from_raw(c.child.id().unwrap() as i32);
    c.close_input();
    tokio::time::sleep(Duration::from_secs(2)).await;
    nix::sys::signal::kill(proxy, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exited = tokio::time::timeout(Duration::from_secs(2), c.wait_exit()).await;
    let _ = nix::sys::signal::kill(proxy, nix::sys::signal::Signal::SIGKILL);
    assert!(
        exited.is_ok(),
        "still running 2 s after SIGTERM: the SDK would SIGKILL it"
    );
    assert_ends_within(pid, Duration::from_secs(2), "the setsid helper").await;
    let ends: Vec<Value> = store
        .events()
        .into_iter()
        .filter(|e| e["event_type"] != "tool_access")
        .collect();
    assert_eq!(ends.len(), 1, "the call's end: {ends:#?}");
}

#[tokio::test]
async fn what_ignores_sigterm_is_killed() {
    let store = store();
    let (mut c, pidfile) = wrapped(&store, "(trap '' TERM; exec sleep 600)");
    c.initialize().await;
    let pid = background_pid(&pidfile).await;
    let stderr = c.child.stderr.take().unwrap();
    let started = Instant::now();
    assert!(c.finish().await.success());
    assert_gone(pid);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2 * GRACE_MS),
        "SIGKILL comes after two grace periods, not {took:?}"
    );
    let err = common::read_text(stderr).await;
    assert!(
        err.contains("ignored SIGTERM; killing its process group"),
        "{err}"
    );
}

#[tokio::test]
async fn a_group_already_sent_sigterm_is_not_sent_it_twice() {
    // The server ignores EOF but obeys SIGTERM; its background process ignores SIGTERM.
    let store = store();
    let (mut c, pidfile) = wrapped_server(&store, "(trap '' TERM; exec sleep 600)", "sleep 30");
    let pid = background_pid(&pidfile).await;
    let stderr = c.child.stderr.take().unwrap();
    assert_eq!(c.finish().await.code(), Some(128 + 15));
    assert_gone(pid);
    let err = common::read_text(stderr).await;
    assert!(
        err.contains("server did not exit after its input closed"),
        "{err}"
    );
    assert!(!err.contains("outlive it; sending SIGTERM"), "{err}");
    assert!(
        err.contains("ignored SIGTERM; killing its process group"),
        "{err}"
    );
}

/// The children of `parent` (from /proc), each with its state letter and its command line.
fn children_of(parent: u32) -> Vec<(i32, String, Vec<u8>)> {
    let parent = parent.to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
                    .unwrap_or_default()
                    .to_string()
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (field("PPid:") == parent).then(|| (pid, field("State:"), cmdline))
        })
        .collect()
}

/// The children of `parent` that have exited and wait to be reaped (zombies).
fn zombie_children(parent: u32) -> Vec<i32> {
    children_of(parent)
        .into_iter()
        .filter(|(_, state, _)| state.starts_with('Z'))
        .map(|(pid, _, _)| pid)
        .collect()
}

/// The gateway in front of `sh -c '<background> & echo $! > pidfile; exec example-server'`,
/// with the folder holding the pid file.
fn gateway_with(background: &str) -> (Gateway, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("background.pid");
    let script = format!(
        "{background} & echo $! > '{}'; exec '{}'",
        pidfile.display(),
        example_server().display()
    );
    let command = format!("\"sh\", \"-c\", {script:?}");
    (Gateway::start_upstream(&command, "", ""), dir, pidfile)
}

#[tokio::test]
async fn the_gateway_reaps_and_ends_what_its_servers_start_in_sessions_of_their_own() {
    // A session's server that daemonizes a helper (`setsid`, a double fork): the helper left
    // the server's group, so ending the group left it running after the gateway exited, and
    // one that exited on its own must not stay a zombie of the gateway.
    // `$!` is the first helper's; the second is double-forked and exits on its own.
    let (gateway, _dir, pidfile) = gateway_with("(setsid sh -c 'sleep 0.2' &); setsid sleep 600");
    raw_session(&gateway.endpoint(), ALICE_KEY).await;
    let pid = background_pid(&pidfile).await;
    // The double-forked helper comes back to the gateway and exits: reaped within seconds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    while !zombie_children(gateway.pid()).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "zombies of the gateway: {:?}",
            zombie_children(gateway.pid())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _gateway) = gateway.stop();
    assert!(status.success(), "{status:?}");
    assert_gone(pid);
}

#[tokio::test]
async fn what_the_server_started_and_ends_within_the_grace_is_not_signalled() {
    // Found by a review: since the proxy adopts orphans, a background process that exited on
    // its own stayed a zombie of the proxy, kept the group alive, and every exit went the
    // whole way (grace, SIGTERM, grace, SIGKILL) with warnings about processes that had obeyed.
    let store = TestStore::new("[limits]\nshutdown_grace_ms = 3000\n");
    let (mut c, pidfile) = wrapped(&store, "sleep 0.3");
    c.initialize().await;
    background_pid(&pidfile).await;
    let stderr = c.child.stderr.take().unwrap();
    let started = Instant::now();
    assert!(c.finish().await.success());
    let took = started.elapsed();
    let err = common::read_text(stderr).await;
    assert!(!err.contains("sending SIGTERM"), "{err}");
    assert!(!err.contains("killing"), "{err}");
    assert!(
        took < Duration::from_millis(2500),
        "the exit waited for a group of zombies: {took:?}\n{err}"
    );
}

#[tokio::test]
async fn a_process_the_proxy_inherited_across_exec_is_not_ended_as_an_orphan() {
    // Found by a review: `sh -c 'sidecar & exec mcp-audit-proxy …'` made the sidecar a child
    // of the proxy, and the proxy ended it at exit as if the server had started it.
    let store = store();
    let pidfile = store.dir.path().join("sidecar.pid");
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "sleep 30 & echo $! > '{}'; exec \"$0\" \"$@\"",
            pidfile.display()
        ))
        .arg(common::proxy_bin())
        .args(["stdio", "--config"])
        .arg(&store.config)
        .arg("--")
        .arg(example_server())
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped());
    let mut c = LineClient::spawn(command);
    c.initialize().await;
    let sidecar = background_pid(&pidfile).await;
    let stderr = c.child.stderr.take().unwrap();
    assert!(c.finish().await.success());
    let alive = running(sidecar);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sidecar),
        nix::sys::signal::Signal::SIGKILL,
    );
    let err = common::read_text(stderr).await;
    assert!(alive, "the proxy ended a process it did not start: {err}");
    assert!(!err.contains("outlive it"), "{err}");
}

#[tokio::test]
async fn an_orphan_that_ignores_sigterm_is_killed_with_what_it_started() {
    // Found by a review: a `setsid` helper that ignored SIGTERM was SIGKILLed alone; its own
    // child then came back to the proxy and outlived it.
    let store = store();
    let inner = store.dir.path().join("inner.pid");
    let background = format!(
        "setsid sh -c 'trap \"\" TERM; sleep 600 & echo $! > {}; wait'",
        inner.display()
    );
    let server = format!("'{}'", example_server().display());
    let (mut c, _) = wrapped_server(&store, &background, &server);
    c.initialize().await;
    let pid = background_pid(&inner).await;
    assert!(c.finish().await.success());
    assert_gone(pid);
}

#[tokio::test]
async fn the_proxys_own_credentials_are_not_in_the_servers_environment() {
    // Found by a hostile pass: a server (code the operator did not write) inherited the HMAC
    // key behind the trail's pseudonyms and other upstreams' tokens, and printed them.
    let store = TestStore::new("");
    std::fs::write(
        &store.config,
        "user_id = \"tester\"\n\
         [[upstream]]\nname = \"local\"\ncommand = [\"true\"]\n\
         [[upstream]]\nname = \"search\"\nurl = \"https://search.example/mcp\"\n\
         bearer_token_env = \"T_SEARCH_TOKEN\"\nheaders_from_env = { \"X-Key\" = \"T_SEARCH_KEY\" }\n\
         [alerts]\nenabled = false\n[audit]\nstore_dir = \"store\"\n\
         [risk]\nhmac_key_env = \"T_HMAC\"\n[risk.store]\nemail = \"hash\"\n",
    )
    .unwrap();
    let seen = store.dir.path().join("env.txt");
    let script = format!("env > '{}'", seen.display());
    let mut command = store.proxy_command(&["sh", "-c", &script]);
    for (var, value) in [
        ("T_HMAC", "an-hmac-key-of-more-than-32-bytes-0123456789"),
        ("T_SEARCH_TOKEN", "search-token"),
        ("T_SEARCH_KEY", "search-key"),
        ("T_SERVERS_OWN", "kept"),
    ] {
        command.env(var, value);
    }
    let mut c = LineClient::spawn(command);
    assert!(c.wait_exit().await.success());
    let env = std::fs::read_to_string(&seen).unwrap();
    assert!(env.contains("T_SERVERS_OWN=kept"), "{env}");
    for var in ["T_HMAC", "T_SEARCH_TOKEN", "T_SEARCH_KEY"] {
        assert!(!env.contains(var), "{var} reached the server: {env}");
    }
}

/// The child of `parent` running `mcp-audit-proxy warden`, if any.
fn warden_of(parent: u32) -> Option<i32> {
    children_of(parent)
        .into_iter()
        .find(|(_, _, cmdline)| cmdline.ends_with(b"\0warden\0"))
        .map(|(pid, _, _)| pid)
}

/// The running warden of `proxy` other than `not`, once there is one (10 s at most).
async fn a_warden_of(proxy: u32, not: Option<i32>) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(w) = warden_of(proxy).filter(|w| Some(*w) != not && running(*w)) {
            return w;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no warden");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sigkill(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// Issue 7 item 5, the rest: a proxy killed with SIGKILL cannot end the server's process
/// group itself (the server runs in a group of its own, out of reach of the client's
/// signals), so a server that ignores its closed input, and what it started, ran on for ever.
/// The warden the proxy starts ends them.
#[tokio::test]
async fn what_the_server_started_ends_when_the_proxy_is_killed_with_sigkill() {
    let store = store();
    // The server ignores the EOF of its input (it keeps running after its client is gone).
    let (mut c, pidfile) = wrapped_server(&store, "sleep 600", "sleep 600");
    let pid = background_pid(&pidfile).await;
    let proxy = c.child.id().unwrap();
    let warden = a_warden_of(proxy, None).await;
    let stderr = c.child.stderr.take().unwrap();
    sigkill(proxy as i32);
    let _ = c.wait_exit().await;
    assert_ends_within(pid, limit(), "the proxy was SIGKILLed").await;
    assert_ends_within(warden, limit(), "the warden after acting").await;
    let err = common::read_text(stderr).await;
    assert!(
        err.contains("the proxy ended without ending its mcp servers"),
        "{err}"
    );
}

/// With `log.file` set, the proxy's log goes there and not to the client's stderr: so does
/// the warden's line, in the same form.
#[tokio::test]
async fn the_wardens_line_goes_to_the_log_file() {
    let store = TestStore::new(&format!(
        "[limits]\nshutdown_grace_ms = {GRACE_MS}\n[log]\nfile = \"proxy.log\"\n"
    ));
    let (mut c, pidfile) = wrapped_server(&store, "sleep 600", "sleep 600");
    let pid = background_pid(&pidfile).await;
    let proxy = c.child.id().unwrap();
    a_warden_of(proxy, None).await;
    let stderr = c.child.stderr.take().unwrap();
    sigkill(proxy as i32);
    let _ = c.wait_exit().await;
    assert_ends_within(pid, limit(), "the proxy was SIGKILLed").await;
    let err = common::read_text(stderr).await;
    assert!(!err.contains("warden"), "{err}");
    let log = store.dir.path().join("proxy.log");
    let started = Instant::now();
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("proxy::warden")) {
            break line.to_string();
        }
        assert!(
            started.elapsed() < limit(),
            "no warden line in the log: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        line.contains(" WARN ")
            && line.contains("the proxy ended without ending its mcp servers")
            && humantime::parse_rfc3339(line.split_whitespace().next().unwrap()).is_ok(),
        "{line}"
    );
}

/// helper-88 #7: a warden that exits while the proxy runs (killed by hand, the OOM killer)
/// left the servers unguarded until the proxy restarted. A new one is started and told of the
/// server's group, so a SIGKILL of the proxy after that still ends what the server started.
#[tokio::test]
async fn a_warden_that_exits_is_replaced_and_the_new_one_ends_the_servers_group() {
    use tokio::io::AsyncBufReadExt;
    let store = store();
    let (mut c, pidfile) = wrapped_server(&store, "sleep 600", "sleep 600");
    let pid = background_pid(&pidfile).await;
    let proxy = c.child.id().unwrap();
    let first = a_warden_of(proxy, None).await;
    let mut stderr = tokio::io::BufReader::new(c.child.stderr.take().unwrap());
    sigkill(first);
    // The proxy says so once the new warden has been told of the group.
    let mut seen = String::new();
    let replaced = tokio::time::timeout(limit(), async {
        let mut line = String::new();
        while stderr.read_line(&mut line).await.unwrap_or(0) > 0 {
            seen.push_str(&line);
            if line.contains("started a new one") {
                return true;
            }
            line.clear();
        }
        false
    })
    .await;
    assert_eq!(replaced, Ok(true), "no new warden: {seen}");
    let second = a_warden_of(proxy, Some(first)).await;
    sigkill(proxy as i32);
    let _ = c.wait_exit().await;
    assert_ends_within(pid, limit(), "the proxy was SIGKILLed after its warden").await;
    assert_ends_within(second, limit(), "the new warden after acting").await;
    let err = common::read_text(stderr).await;
    assert!(
        err.contains("the proxy ended without ending its mcp servers"),
        "{err}"
    );
}

/// The gateway's sessions' servers too: one warden for the whole gateway.
#[tokio::test]
async fn the_gateways_servers_end_when_the_gateway_is_killed_with_sigkill() {
    let (gateway, _dir, pidfile) = gateway_with("sleep 600");
    raw_session(&gateway.endpoint(), ALICE_KEY).await;
    let pid = background_pid(&pidfile).await;
    assert!(warden_of(gateway.pid()).is_some(), "no warden");
    sigkill(gateway.pid() as i32);
    assert_ends_within(pid, limit(), "the gateway was SIGKILLed").await;
}

/// After a normal exit the warden has nothing to do: it leaves at once, without a word.
#[tokio::test]
async fn the_warden_leaves_quietly_after_a_normal_exit() {
    let store = store();
    let (mut c, pidfile) = wrapped(&store, "sleep 600");
    c.initialize().await;
    let pid = background_pid(&pidfile).await;
    let warden = warden_of(c.child.id().unwrap()).expect("a warden runs beside the proxy");
    let stderr = c.child.stderr.take().unwrap();
    assert!(c.finish().await.success());
    assert_gone(pid);
    assert_ends_within(warden, Duration::from_secs(3), "the warden after an exit").await;
    let err = common::read_text(stderr).await;
    assert!(!err.contains("warden"), "{err}");
}
