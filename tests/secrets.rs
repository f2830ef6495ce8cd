//! Secrets stay secret, and kubeconfig works as kubectl's does (issue #12), on the
//! sim and on the real test bed: a leak harness (a token, a client key, an exec
//! plugin whose env, args and output carry markers and which fails, a proxy URL
//! with a password) run through every command with logging at trace, then every
//! byte printed and every file meshdeck wrote is searched for the markers; a
//! CONNECT proxy the test owns; relative paths in a kubeconfig elsewhere.

mod common;

use std::time::Duration;

use common::{MeshdeckCli, TestFleet, text};
use serde_json::Value;

const MARKERS: [&str; 6] = ["LEAKTOKEN7", "LEAKENV7", "LEAKARG7", "LEAKOUT7", "LEAKPASS7", "LEAKKEY7"];

/// An executable shell script `name` in `dir`.
fn script(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("script");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    path
}

/// A cluster entry of the fleet's kubeconfig and a user's token, to build kubeconfigs from.
fn cluster_of(kc: &Value, name: &str) -> Value {
    kc["clusters"].as_array().and_then(|cs| cs.iter().find(|c| c["name"] == name)).expect("cluster")["cluster"].clone()
}

fn token_of(kc: &Value, user: &str) -> String {
    kc["users"].as_array().and_then(|us| us.iter().find(|u| u["name"] == user)).expect("user")["user"]["token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// The harness's kubeconfig in `dir`: contexts `tok` (cluster1, a marker token),
/// `key` (cluster1, a marker client key), `exec` (cluster2, a failing exec plugin
/// whose env, args and output carry markers) and `proxied` (cluster3 through a
/// proxy URL with a marker password).
fn leaky_kubeconfig(fleet_yaml: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let kc: Value = serde_saphyr::from_str(fleet_yaml).expect("kubeconfig");
    let plugin = script(dir, "leaky-plugin", "#!/bin/sh\necho \"LEAKOUT7 $MARKER_ENV $*\"\necho \"LEAKOUT7 stderr\" >&2\nexit 3\n");
    let mut proxied = cluster_of(&kc, "cluster3");
    proxied["proxy-url"] = serde_json::json!("http://user:LEAKPASS7@127.0.0.1:9");
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "tok",
        "clusters": [
            {"name": "c1", "cluster": cluster_of(&kc, "cluster1")},
            {"name": "c2", "cluster": cluster_of(&kc, "cluster2")},
            {"name": "c3", "cluster": proxied},
        ],
        "users": [
            {"name": "tok", "user": {"token": "LEAKTOKEN7"}},
            {"name": "exec", "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1", "command": plugin.display().to_string(),
                "args": ["--client-secret=LEAKARG7"], "env": [{"name": "MARKER_ENV", "value": "LEAKENV7"}],
                "interactiveMode": "Never"
            }}},
            {"name": "key", "user": {"client-certificate-data": "TEVBS0tFWTc=", "client-key-data": "TEVBS0tFWTc="}},
        ],
        "contexts": [
            {"name": "tok", "context": {"cluster": "c1", "user": "tok"}},
            {"name": "exec", "context": {"cluster": "c2", "user": "exec"}},
            {"name": "proxied", "context": {"cluster": "c3", "user": "tok"}},
            {"name": "key", "context": {"cluster": "c1", "user": "key"}},
        ],
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_json::to_string(&doc).expect("json")).expect("write");
    path
}

/// No marker in `printed` nor in any file under `dirs`.
fn assert_no_markers(printed: &str, dirs: &[&std::path::Path]) {
    for m in MARKERS {
        assert!(!printed.contains(m), "{m} was printed:\n{printed}");
    }
    for d in dirs {
        for f in common::files_under(d) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            let content = String::from_utf8_lossy(&bytes);
            for m in MARKERS {
                assert!(!content.contains(m), "{m} is in {}", f.display());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_output_logs_history_or_files() {
    let fleet = TestFleet::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = leaky_kubeconfig(&fleet.kubeconfig_yaml(), dir.path());
    let cli = MeshdeckCli::new(path);
    let state = tempfile::tempdir().expect("tmp");
    let mut printed = String::new();
    for args in [
        vec!["clusters"],
        vec!["clusters", "-o", "json"],
        vec!["inventory", "-o", "json", "--timeout", "5"],
        vec!["render", "-f", "examples/reviews-canary.yaml", "--timeout", "5"],
        vec!["diff", "-f", "examples/reviews-canary.yaml", "--timeout", "5"],
        vec!["apply", "-f", "examples/reviews-canary.yaml", "--yes", "--timeout", "5"],
        vec!["history", "-o", "json"],
    ] {
        let cli = cli.clone();
        let state = state.path().to_path_buf();
        let out = tokio::task::spawn_blocking(move || {
            cli.command(&args)
                .env("MESHDECK_LOG", "trace")
                .env("MESHDECK_STATE_DIR", state)
                .env("RUST_LOG", "trace")
                .output()
                .expect("runs")
        })
        .await
        .expect("joined");
        printed.push_str(&text(&out));
    }
    // The exec plugin really ran and failed (its failure is named, not its words).
    assert!(printed.contains("exec plugin leaky-plugin failed"), "{printed}");
    assert_no_markers(&printed, &[cli.config.path(), cli.data.path(), state.path()]);
}

/// A CONNECT proxy on loopback that counts the tunnels it opened.
async fn connect_proxy() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let Some(target) = head.strip_prefix("CONNECT ").and_then(|r| r.split_whitespace().next()) else { return };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else { return };
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, count, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_is_used_and_no_proxy_bypasses_it() {
    let fleet = TestFleet::start().await;
    let (addr, count, _task) = connect_proxy().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let run = |no_proxy: Option<&'static str>| {
        let cli = cli.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut c = cli.command(&["--context", "cluster1", "clusters", "-o", "json"]);
                c.env("HTTPS_PROXY", format!("http://{addr}")).env_remove("NO_PROXY").env_remove("no_proxy");
                if let Some(n) = no_proxy {
                    c.env("NO_PROXY", n);
                }
                c.output().expect("runs")
            })
            .await
            .expect("joined")
        }
    };
    let out = run(None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows[0]["state"], "live", "reached through the proxy: {}", text(&out));
    let through = count.load(std::sync::atomic::Ordering::SeqCst);
    assert!(through > 0, "the proxy carried the connections");
    let out = run(Some("127.0.0.1")).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), through, "NO_PROXY bypasses the proxy");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_paths_resolve_against_the_kubeconfigs_directory() {
    let fleet = TestFleet::start().await;
    let kc: Value = serde_saphyr::from_str(&fleet.kubeconfig_yaml()).expect("kubeconfig");
    let c1 = cluster_of(&kc, "cluster1");
    let token = token_of(&kc, "cluster1-admin");
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.decode(c1["certificate-authority-data"].as_str().expect("ca")).expect("base64");
    let elsewhere = tempfile::tempdir().expect("tmp");
    let sub = elsewhere.path().join("conf");
    std::fs::create_dir_all(sub.join("certs")).expect("mkdir");
    std::fs::write(sub.join("certs/ca.crt"), ca).expect("ca");
    std::fs::write(sub.join("token"), token).expect("token");
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "c1",
        "clusters": [{"name": "c1", "cluster": {"server": c1["server"], "certificate-authority": "certs/ca.crt"}}],
        "users": [{"name": "u", "user": {"tokenFile": "token"}}],
        "contexts": [{"name": "c1", "context": {"cluster": "c1", "user": "u"}}],
    });
    std::fs::write(sub.join("kubeconfig"), serde_json::to_string(&doc).expect("json")).expect("write");
    // Run from the repository, far from the kubeconfig.
    let cli = MeshdeckCli::new(sub.join("kubeconfig"));
    let out = cli.run(&["clusters", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows[0]["state"], "live", "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_adds_a_failed_plugins_own_words_and_nothing_else() {
    let fleet = TestFleet::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = leaky_kubeconfig(&fleet.kubeconfig_yaml(), dir.path());
    let cli = MeshdeckCli::new(path);
    let quiet = text(&cli.run(&["--context", "exec", "clusters"]).await);
    assert!(quiet.contains("exec plugin leaky-plugin failed (exit status: 3)"), "{quiet}");
    assert!(!quiet.contains("stderr"), "without --verbose the plugin's stderr stays out:\n{quiet}");
    let verbose = text(&cli.run(&["--context", "exec", "--verbose", "clusters", "-o", "json"]).await);
    let rows: Vec<Value> =
        serde_json::from_str(verbose.lines().take_while(|l| !l.starts_with("error")).collect::<Vec<_>>().join("\n").trim())
            .unwrap_or_default();
    let error = rows.first().map(|r| r["error"]["message"].to_string()).unwrap_or_default();
    // Its stderr line (which says LEAKOUT7 stderr) is what --verbose adds; env, args and stdout never.
    assert!(error.contains("exec plugin leaky-plugin failed (exit status: 3): LEAKOUT7 stderr"), "{verbose}");
    for m in ["LEAKENV7", "LEAKARG7", "LEAKOUT7 LEAKENV7"] {
        assert!(!verbose.contains(m), "{m} was printed with --verbose:\n{verbose}");
    }
}

/// A SOCKS5 proxy (RFC 1928, no authentication, CONNECT) on loopback that counts
/// the connections it carried.
async fn socks5_proxy() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut hello = [0u8; 2];
                if client.read_exact(&mut hello).await.is_err() || hello[0] != 5 {
                    return;
                }
                let mut methods = vec![0u8; hello[1] as usize];
                if client.read_exact(&mut methods).await.is_err() || !methods.contains(&0) {
                    return;
                }
                if client.write_all(&[5, 0]).await.is_err() {
                    return;
                }
                let mut head = [0u8; 4];
                if client.read_exact(&mut head).await.is_err() || head[1] != 1 {
                    return;
                }
                let host = match head[3] {
                    1 => {
                        let mut ip = [0u8; 4];
                        let _ = client.read_exact(&mut ip).await;
                        std::net::Ipv4Addr::from(ip).to_string()
                    }
                    3 => {
                        let mut len = [0u8; 1];
                        let _ = client.read_exact(&mut len).await;
                        let mut name = vec![0u8; len[0] as usize];
                        let _ = client.read_exact(&mut name).await;
                        String::from_utf8_lossy(&name).to_string()
                    }
                    _ => return,
                };
                let mut port = [0u8; 2];
                if client.read_exact(&mut port).await.is_err() {
                    return;
                }
                let Ok(mut upstream) = tokio::net::TcpStream::connect((host.as_str(), u16::from_be_bytes(port))).await else { return };
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, count, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socks5_proxy_url_in_the_kubeconfig_is_used() {
    let fleet = TestFleet::start().await;
    let (addr, count, _task) = socks5_proxy().await;
    let kc: Value = serde_saphyr::from_str(&fleet.kubeconfig_yaml()).expect("kubeconfig");
    let mut c1 = cluster_of(&kc, "cluster1");
    c1["proxy-url"] = serde_json::json!(format!("socks5://{addr}"));
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "c1",
        "clusters": [{"name": "c1", "cluster": c1}],
        "users": [{"name": "u", "user": {"token": token_of(&kc, "cluster1-admin")}}],
        "contexts": [{"name": "c1", "context": {"cluster": "c1", "user": "u"}}],
    });
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("kubeconfig"), serde_json::to_string(&doc).expect("json")).expect("write");
    let cli = MeshdeckCli::new(dir.path().join("kubeconfig"));
    let out = cli.run(&["clusters", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows[0]["state"], "live", "reached through the SOCKS5 proxy: {}", text(&out));
    assert!(count.load(std::sync::atomic::Ordering::SeqCst) > 0, "the SOCKS5 proxy carried the connections");
}

/// The harness's contexts in the cockpit (a real terminal, logging at trace): the
/// exec context registered from the clusters view, the client-key alias switched
/// to; nothing on the screen, in the log or in any file carries a marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cockpit_shows_and_logs_no_credential() {
    if !common::tool_available("tmux", &["-V"]) {
        return;
    }
    let fleet = TestFleet::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = leaky_kubeconfig(&fleet.kubeconfig_yaml(), dir.path());
    let home = tempfile::tempdir().expect("tmp");
    let homedir = home.path().to_path_buf();
    let screens = tokio::task::spawn_blocking(move || {
        let t = common::tmux::start_cockpit_with(
            "MESHDECK_LOG=trace RUST_LOG=trace",
            "leak",
            &homedir,
            &path,
            "--context tok --context proxied",
            250,
            40,
        );
        let mut screens = vec![t.wait_for(&["clusters live"], 30)];
        // Register the exec context (the third row: two clusters, then what is available).
        t.keys(&["g", "c"]);
        screens.push(t.wait_for(&["exec", "available"], 10));
        t.keys(&["Down", "Down", "Space"]);
        screens.push(t.wait_for(&["exec plugin leaky-plugin failed"], 20));
        // Act for cluster1 as its client-key alias: refused, and said so.
        t.keys(&["Home", "Enter"]);
        screens.push(t.wait_for(&["cannot act as key"], 20));
        t.keys(&["g", "l"]);
        screens.push(t.wait_for(&["registered exec"], 10));
        t.keys(&["q"]);
        screens
    })
    .await
    .expect("driving the cockpit");
    let printed = screens.join("\n");
    assert_no_markers(&printed, &[home.path()]);
    assert!(
        common::files_under(home.path()).iter().any(|f| f.extension().is_some_and(|e| e == "log")),
        "the cockpit wrote its trace log under {}",
        home.path().display()
    );
}

/// A kubeconfig of cluster2 whose user is the exec plugin `plugin` (its
/// `interactiveMode` as given), next to the fleet's own cluster1 context.
fn exec_kubeconfig(fleet_yaml: &str, dir: &std::path::Path, plugin: &std::path::Path, mode: &str) -> std::path::PathBuf {
    let kc: Value = serde_saphyr::from_str(fleet_yaml).expect("kubeconfig");
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "c1",
        "clusters": [{"name": "c1", "cluster": cluster_of(&kc, "cluster1")}, {"name": "c2", "cluster": cluster_of(&kc, "cluster2")}],
        "users": [
            {"name": "admin", "user": {"token": token_of(&kc, "cluster1-admin")}},
            {"name": "plugin", "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1", "command": plugin.display().to_string(), "interactiveMode": mode,
            }}},
        ],
        "contexts": [
            {"name": "c1", "context": {"cluster": "c1", "user": "admin"}},
            {"name": "login", "context": {"cluster": "c2", "user": "plugin"}},
        ],
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_json::to_string(&doc).expect("json")).expect("write");
    path
}

fn credential(token: &str) -> String {
    format!(r#"{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{{"token":"{token}"}}}}"#)
}

/// A plugin that takes its time (here: until the test lets it go) runs off the
/// cockpit's loop: keys still work meanwhile, and the cluster comes live after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_exec_plugin_does_not_freeze_the_cockpit() {
    if !common::tool_available("tmux", &["-V"]) {
        return;
    }
    let fleet = TestFleet::start().await;
    let kc: Value = serde_saphyr::from_str(&fleet.kubeconfig_yaml()).expect("kubeconfig");
    let dir = tempfile::tempdir().expect("tmp");
    let go = dir.path().join("go");
    let plugin = script(
        dir.path(),
        "slow-login",
        &format!(
            "#!/bin/sh\nwhile [ ! -e '{}' ]; do sleep 0.1; done\necho '{}'\n",
            go.display(),
            credential(&token_of(&kc, "cluster2-admin"))
        ),
    );
    let path = exec_kubeconfig(&fleet.kubeconfig_yaml(), dir.path(), &plugin, "Never");
    let home = dir.path().join("home");
    tokio::task::spawn_blocking(move || {
        let t = common::tmux::start_cockpit("slow", &home, &path, "--context c1", 160, 40);
        t.wait_for(&["1/1 clusters live"], 30);
        t.keys(&["g", "c"]);
        t.wait_for(&["login", "available"], 10);
        t.keys(&["Down", "Space"]);
        // The plugin is still waiting; the cockpit answers keys all the same.
        t.keys(&["?"]);
        t.wait_for(&["show the key bindings"], 10);
        t.keys(&["Escape"]);
        std::fs::write(&go, "").expect("let the plugin go");
        t.wait_for(&["2/2 clusters live"], 30);
        t.keys(&["q"]);
    })
    .await
    .expect("driving the cockpit");
}

/// A plugin that asks the user something gets the terminal: the cockpit steps
/// aside, the prompt is visible, the answer reaches the plugin, the cockpit returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_exec_plugin_gets_the_terminal() {
    if !common::tool_available("tmux", &["-V"]) {
        return;
    }
    let fleet = TestFleet::start().await;
    let kc: Value = serde_saphyr::from_str(&fleet.kubeconfig_yaml()).expect("kubeconfig");
    let dir = tempfile::tempdir().expect("tmp");
    let plugin = script(
        dir.path(),
        "device-login",
        // Like kubelogin or `aws sso`, it asks once and then answers from its cache
        // (kube runs an exec plugin more than once while it builds one client).
        &format!(
            "#!/bin/sh\ncache='{cache}'\nif [ ! -e \"$cache\" ]; then\n  printf 'Enter the code shown in your browser: ' >&2\n  read code\n  [ \"$code\" = 4242 ] || exit 1\n  touch \"$cache\"\nfi\necho '{}'\n",
            credential(&token_of(&kc, "cluster2-admin")),
            cache = dir.path().join("login-cache").display()
        ),
    );
    let path = exec_kubeconfig(&fleet.kubeconfig_yaml(), dir.path(), &plugin, "IfAvailable");
    let home = dir.path().join("home");
    tokio::task::spawn_blocking(move || {
        // Started on c1 alone (the plugin runs only when `login` is registered).
        let t = common::tmux::start_cockpit("interactive", &home, &path, "--context c1", 160, 40);
        t.wait_for(&["1/1 clusters live"], 30);
        t.keys(&["g", "c"]);
        t.wait_for(&["login", "available"], 10);
        t.keys(&["Down", "Space"]);
        t.wait_for(&["login: running device-login for credentials", "Enter the code shown in your browser:"], 20);
        t.keys(&["4242", "Enter"]);
        t.wait_for(&["2/2 clusters live"], 30);
        t.keys(&["q"]);
    })
    .await
    .expect("driving the cockpit");
}
