//! `bench soak`: the inventory over a long run of a changing fleet (memory, and the model against a fresh list).

use super::*;

pub(super) async fn bench_soak(size: &SoakSize) -> Result<(), CliError> {
    let duration = duration_of(&size.duration).map_err(CliError::bad_input)?;
    let sim = SimProcess::start_living(&size.fleet, true)?;
    println!(
        "fleet: {} clusters x {} services, living, with chaos (sim started in {:.1} s); watching for {:.0} s",
        size.fleet.clusters,
        size.fleet.services,
        sim.startup.as_secs_f64(),
        duration.as_secs_f64()
    );
    let global = GlobalArgs {
        kubeconfig: Some(sim.kubeconfig.clone()),
        contexts: sim.contexts(size.fleet.clusters),
        read_only: true,
        ..Default::default()
    };
    let (clusters, _) = crate::cli::fleet::registry(&global).await?;
    let started = Instant::now();
    let mut inv = Inventory::start(&clusters);
    inv.settled(Duration::from_secs(120)).await;
    // Warm-up: the first lists' buffers are given back, and chaos has taken a cluster down and back.
    let warm_up = (duration / 10).max(Duration::from_secs(45)).min(duration / 2);
    tokio::time::sleep(warm_up.saturating_sub(started.elapsed())).await;
    let baseline = rss_mib().unwrap_or(f64::NAN);
    println!("warm-up: {:.0} s; RSS {baseline:.1} MiB", started.elapsed().as_secs_f64());
    let mut highest = baseline;
    let mut next_line = started + Duration::from_secs(60);
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let rss = rss_mib().unwrap_or(f64::NAN);
        highest = highest.max(rss);
        if Instant::now() >= next_line {
            let snap = inv.snapshots.borrow().clone();
            let live = snap.clusters.iter().filter(|c| c.state == crate::inventory::ClusterState::Live).count();
            println!("  {:>5.0} s: RSS {rss:.1} MiB, {live}/{} clusters live", started.elapsed().as_secs_f64(), snap.clusters.len());
            while next_line <= Instant::now() {
                next_line += Duration::from_secs(60);
            }
        }
    }
    let end = rss_mib().unwrap_or(f64::NAN);
    println!(
        "rss: {end:.1} MiB at the end, highest {highest:.1} MiB after warm-up: {:+.1}% / {:+.1}% against {baseline:.1} MiB",
        (end / baseline - 1.0) * 100.0,
        (highest / baseline - 1.0) * 100.0
    );
    // The model kept for the whole run against a fresh inventory of the same fleet; the
    // fleet keeps living, so a difference gets a few chances to settle.
    let mut fresh = Inventory::start(&clusters);
    fresh.settled(Duration::from_secs(120)).await;
    let mut verdict = String::new();
    for _ in 0..10 {
        let (kept, new) = (inv.snapshots.borrow().clone(), fresh.snapshots.borrow().clone());
        let (a, b) = (live_model(&kept), live_model(&new));
        let both: Vec<&String> = a.keys().filter(|c| b.contains_key(*c)).collect();
        let differ: Vec<&String> = both.iter().copied().filter(|c| a[*c] != b[*c]).collect();
        verdict = format!(
            "model: {} of {} clusters live in both equal a fresh list{}",
            both.len() - differ.len(),
            both.len(),
            if differ.is_empty() {
                String::new()
            } else {
                format!("; differ: {}", differ.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "))
            }
        );
        if differ.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("{verdict}");
    let snap = inv.snapshots.borrow().clone();
    let now = chrono::Utc::now();
    let ages: Vec<i64> = snap.clusters.iter().filter_map(|c| c.last_seen.map(|t| (now - t).num_seconds())).collect();
    let stale: Vec<&str> = snap
        .clusters
        .iter()
        .filter(|c| c.state == crate::inventory::ClusterState::Live && c.last_seen.is_none_or(|t| (now - t).num_seconds() > 30))
        .map(|c| c.name.as_str())
        .collect();
    println!(
        "watchers: last heard from each cluster at most {} s ago ({} clusters); live clusters not heard from in 30 s: {}",
        ages.iter().max().copied().unwrap_or(-1),
        ages.len(),
        if stale.is_empty() { "none".to_string() } else { stale.join(", ") }
    );
    Ok(())
}
