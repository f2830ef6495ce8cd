//! `bench inventory`: a fleet's first complete inventory and a relist, against the network floor and a kubectl loop.

use super::*;

pub(super) async fn bench_inventory(size: &FleetSize) -> Result<(), CliError> {
    let sim = SimProcess::start(size)?;
    println!("fleet: {} clusters x {} services (sim started in {:.2} s)", size.clusters, size.services, sim.startup.as_secs_f64());
    let global = GlobalArgs {
        kubeconfig: Some(sim.kubeconfig.clone()),
        contexts: sim.contexts(size.clusters),
        read_only: true,
        ..Default::default()
    };
    let rss_before = rss_mib().unwrap_or(0.0);
    let started = Instant::now();
    let (clusters, _) = crate::cli::fleet::registry(&global).await?;
    let mut inv = Inventory::start(&clusters);
    let snap = inv.settled(Duration::from_secs(120)).await;
    let t_inventory = started.elapsed();
    let live = snap.clusters.iter().filter(|c| c.state == crate::inventory::ClusterState::Live).count();
    let services: usize = snap.services.iter().map(|s| s.clusters.len()).sum();
    let pods: u32 = snap
        .services
        .iter()
        .flat_map(|s| s.clusters.values())
        .map(|p| p.versions.values().map(|v| v.total).sum::<u32>() + p.unversioned.total)
        .sum();
    // Let the first burst settle, then read memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_mib().unwrap_or(0.0);
    let peak = peak_rss_mib(None).unwrap_or(f64::NAN);
    println!(
        "meshdeck: complete inventory ({live}/{} clusters live, {services} services, {pods} pods) in {:.2} s",
        snap.clusters.len(),
        t_inventory.as_secs_f64()
    );
    println!(
        "meshdeck: peak RSS {peak:.0} MiB; retained after sync {:.1} MiB, about {:.0} bytes per pod",
        rss_after - rss_before,
        (rss_after - rss_before) * 1024.0 * 1024.0 / f64::from(pods.max(1))
    );
    // The allocator gives back what the lists' buffers took within a second or so.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_after = rss_mib().unwrap_or(0.0);
    println!(
        "meshdeck: steady 5 s later: retained {:.1} MiB, about {:.0} bytes per pod",
        rss_after - rss_before,
        (rss_after - rss_before) * 1024.0 * 1024.0 / f64::from(pods.max(1))
    );
    // Every cluster drops its connections at once (as after a network blip or an API
    // server restart): every watch lists again. The peak while they do, against the
    // steady state just measured.
    if sim.admin.is_some() && reset_peak_rss() {
        let names: Vec<String> = clusters.iter().map(|c| c.name.clone()).collect();
        for n in &names {
            sim.fault(n, "down")?;
        }
        let _ =
            inv.wait_until(Duration::from_secs(60), |s| s.clusters.iter().all(|c| c.state != crate::inventory::ClusterState::Live)).await;
        let relisting = Instant::now();
        for n in &names {
            sim.fault(n, "healthy")?;
        }
        let back = inv
            .wait_until(Duration::from_secs(120), |s| {
                s.settled() && s.clusters.iter().all(|c| c.state == crate::inventory::ClusterState::Live)
            })
            .await;
        let live_again = relisting.elapsed();
        // Live comes with the first page of each relist; the staged lists swap in at
        // their end. Watch the peak for twice the first inventory's time.
        let window = (t_inventory * 2).max(Duration::from_secs(2));
        tokio::time::sleep(window.saturating_sub(live_again)).await;
        let relist_peak = peak_rss_mib(None).unwrap_or(f64::NAN);
        println!(
            "relist: every cluster down, then back: all live again in {:.2} s{}; peak RSS within {:.1} s of reconnecting {relist_peak:.0} MiB, {:.2}x the steady {rss_after:.0} MiB",
            live_again.as_secs_f64(),
            if back { "" } else { " (NOT all live within 120 s)" },
            window.as_secs_f64(),
            relist_peak / rss_after.max(1.0)
        );
    }
    drop(inv);
    let floor = raw_floor(&clusters, 16).await?;
    println!(
        "floor: the same pod and service lists (pages of 500) fetched from every cluster, 16 at a time, not decoded: {:.2} s \
         ({:.1} MiB; {:.0} bytes of JSON per pod)",
        floor.elapsed.as_secs_f64(),
        (floor.pod_bytes + floor.service_bytes) as f64 / 1048576.0,
        floor.pod_bytes as f64 / f64::from(pods.max(1))
    );
    println!("ratio: meshdeck takes {:.2}x the floor", t_inventory.as_secs_f64() / floor.elapsed.as_secs_f64().max(1e-9));
    if size.no_kubectl || !kubectl_available() {
        println!("kubectl: not run");
        return Ok(());
    }
    let (t_kubectl, bytes) = tokio::task::spawn_blocking({
        let kc = sim.kubeconfig.clone();
        let contexts = sim.contexts(size.clusters);
        move || kubectl_loop(&kc, &contexts, "svc,pods")
    })
    .await
    .map_err(|e| CliError::failed(e.to_string()))??;
    println!(
        "kubectl: get svc,pods -A -o json over {} contexts, one after another: {:.2} s ({:.1} MiB of JSON)",
        size.clusters,
        t_kubectl.as_secs_f64(),
        bytes as f64 / 1048576.0
    );
    println!("ratio: meshdeck is {:.1}x faster than the kubectl loop", t_kubectl.as_secs_f64() / t_inventory.as_secs_f64());
    Ok(())
}

/// What fetching the lists costs with nothing done to them.
pub(super) struct Floor {
    elapsed: Duration,
    pod_bytes: usize,
    service_bytes: usize,
}

/// The network floor of an inventory: every cluster's pods and services listed as the
/// watchers list them (pages of 500), `concurrency` requests at a time, the bodies read
/// and dropped. Only `metadata.continue` is looked at, to fetch the next page.
pub(super) async fn raw_floor(clusters: &[crate::registry::Cluster], concurrency: usize) -> Result<Floor, CliError> {
    use futures::StreamExt;
    // A list's metadata comes before its items: the token is in the first bytes.
    let continue_token = |body: &str| -> Option<String> {
        let head = &body[..body.len().min(1024)];
        let start = head.find("\"continue\":\"")? + "\"continue\":\"".len();
        let len = head[start..].find('"')?;
        Some(head[start..start + len].to_string()).filter(|t| !t.is_empty())
    };
    let started = Instant::now();
    let lists = clusters.iter().filter_map(|c| c.client.clone().ok()).flat_map(|client| {
        [("pods", client.clone()), ("services", client)].into_iter().map(|(what, client)| async move {
            let mut bytes = 0usize;
            let mut next: Option<String> = None;
            loop {
                let mut path = format!("/api/v1/{what}?limit=500");
                if let Some(token) = &next {
                    path.push_str(&format!("&continue={token}"));
                }
                let request = http::Request::get(path).body(Vec::new()).map_err(|e| e.to_string())?;
                let body = client.request_text(request).await.map_err(|e| e.to_string())?;
                bytes += body.len();
                // A continue token is URL-safe base64 (a real server's and the sim's).
                next = continue_token(&body);
                if next.is_none() {
                    return Ok::<_, String>((what, bytes));
                }
            }
        })
    });
    let results: Vec<Result<(&str, usize), String>> = futures::stream::iter(lists).buffer_unordered(concurrency).collect().await;
    let mut floor = Floor { elapsed: started.elapsed(), pod_bytes: 0, service_bytes: 0 };
    for r in results {
        match r.map_err(CliError::failed)? {
            ("pods", b) => floor.pod_bytes += b,
            (_, b) => floor.service_bytes += b,
        }
    }
    Ok(floor)
}
