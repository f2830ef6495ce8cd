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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_output_logs_history_or_files() {
    let fleet = TestFleet::start().await;
    let kc: Value = serde_saphyr::from_str(&fleet.kubeconfig_yaml()).expect("kubeconfig");
    let dir = tempfile::tempdir().expect("tmp");
    let plugin = dir.path().join("leaky-plugin");
    std::fs::write(&plugin, "#!/bin/sh\necho \"LEAKOUT7 $MARKER_ENV $*\"\necho \"LEAKOUT7 stderr\" >&2\nexit 3\n").expect("plugin");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let cluster =
        |name: &str| kc["clusters"].as_array().and_then(|cs| cs.iter().find(|c| c["name"] == name)).expect("cluster")["cluster"].clone();
    let mut proxied = cluster("cluster3");
    proxied["proxy-url"] = serde_json::json!("http://user:LEAKPASS7@127.0.0.1:9");
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "tok",
        "clusters": [
            {"name": "c1", "cluster": cluster("cluster1")},
            {"name": "c2", "cluster": cluster("cluster2")},
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
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, serde_json::to_string(&doc).expect("json")).expect("write");
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
    for m in MARKERS {
        assert!(!printed.contains(m), "{m} was printed:\n{printed}");
    }
    for d in [cli.config.path(), cli.data.path(), state.path()] {
        for f in common::files_under(d) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            let content = String::from_utf8_lossy(&bytes);
            for m in MARKERS {
                assert!(!content.contains(m), "{m} is in {}", f.display());
            }
        }
    }
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
    let c1 = kc["clusters"].as_array().and_then(|cs| cs.iter().find(|c| c["name"] == "cluster1")).expect("cluster1")["cluster"].clone();
    let token = kc["users"].as_array().and_then(|us| us.iter().find(|u| u["name"] == "cluster1-admin")).expect("user")["user"]["token"]
        .as_str()
        .expect("token")
        .to_string();
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
