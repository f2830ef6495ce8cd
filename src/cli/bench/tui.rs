//! `bench tui`: the cockpit's frame times, filter latency and pod churn.

use super::*;

/// Pod events the churn part of `bench tui` writes (2,000 a second).
pub(super) const CHURN_EVENTS: u64 = 10_000;

pub(super) async fn bench_tui() -> Result<(), CliError> {
    use crate::tui::app::{AppState, update};
    use crate::tui::msg::Msg;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    let theme = crate::tui::theme::Theme::builtin("dark");
    let draw = |term: &mut Terminal<TestBackend>, app: &AppState| -> Result<(), CliError> {
        term.draw(|f| crate::tui::views::draw(f, app, &theme)).map(|_| ()).map_err(|e| CliError::failed(e.to_string()))
    };

    // 1. Frames: 10,000 services over 50 clusters at 200x60.
    let built = Instant::now();
    let snap = std::sync::Arc::new(synthetic_inventory(50, 10_000));
    let mut app = AppState::new(snap.clone(), crate::tui::keymap::Keymap::builtin("default"), false, chrono::Utc::now());
    let t_rows = built.elapsed();
    let mut term = Terminal::new(TestBackend::new(200, 60)).map_err(|e| CliError::failed(e.to_string()))?;
    update(&mut app, Msg::Layout { rows: 45 });
    let mut frames = Vec::new();
    for i in 0..500 {
        if i % 10 == 0 {
            update(&mut app, Msg::Key(crossterm::event::KeyEvent::from(crossterm::event::KeyCode::PageDown)));
        }
        let t = Instant::now();
        draw(&mut term, &app)?;
        frames.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut updates = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        update(&mut app, Msg::Fleet(snap.clone()));
        updates.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "frame: 10,000 services x 50 clusters at 200x60: draw p50 {:.2} ms, p99 {:.2} ms (500 frames); new snapshot (filter+sort) p50 {:.1} ms, p99 {:.1} ms; first build {:.0} ms",
        percentile(&mut frames.clone(), 0.5),
        percentile(&mut frames, 0.99),
        percentile(&mut updates.clone(), 0.5),
        percentile(&mut updates, 0.99),
        t_rows.as_secs_f64() * 1000.0
    );

    // 1b. Filter keystrokes on a 100-cluster fleet (20,000 services, 40,000 versions a
    // cluster): each key is one update (filter, sort, select) and one frame.
    let big = std::sync::Arc::new(synthetic_inventory(100, 20_000));
    let mut app = AppState::new(big, crate::tui::keymap::Keymap::builtin("default"), false, chrono::Utc::now());
    update(&mut app, Msg::Layout { rows: 45 });
    draw(&mut term, &app)?;
    let key = |c: crossterm::event::KeyCode| Msg::Key(crossterm::event::KeyEvent::from(c));
    let mut keystrokes = Vec::new();
    let mut narrowest = usize::MAX;
    for round in 0..10 {
        update(&mut app, key(crossterm::event::KeyCode::Char('/')));
        for c in format!("svc-{}{}", round % 2, round).chars().chain(std::iter::repeat_n('\u{8}', 4)) {
            let code = if c == '\u{8}' { crossterm::event::KeyCode::Backspace } else { crossterm::event::KeyCode::Char(c) };
            let t = Instant::now();
            update(&mut app, key(code));
            draw(&mut term, &app)?;
            keystrokes.push(t.elapsed().as_secs_f64() * 1000.0);
            narrowest = narrowest.min(app.rows.len());
        }
        update(&mut app, key(crossterm::event::KeyCode::Esc));
    }
    println!(
        "filter: 20,000 services x 100 clusters at 200x60, a keystroke to its repainted frame: p50 {:.1} ms, p99 {:.1} ms ({} keys; the narrowest filter left {narrowest} rows)",
        percentile(&mut keystrokes.clone(), 0.5),
        percentile(&mut keystrokes.clone(), 0.99),
        keystrokes.len()
    );

    // 2. Event to screen: 500 pod label changes per second through the sim, watchers, aggregator, update and draw.
    let fleet = meshdeck_sim::SimFleet::start(meshdeck_sim::SimConfig { clusters: 3, live: false, ..Default::default() })
        .await
        .map_err(|e| CliError::failed(e.to_string()))?;
    let dir = std::env::temp_dir().join(format!("meshdeck-bench-tui-{}", std::process::id()));
    let _cleanup = tempfile_dir::Dir(dir.clone());
    std::fs::create_dir_all(&dir).map_err(|e| CliError::failed(e.to_string()))?;
    fleet.write_kubeconfig(&dir.join("kubeconfig")).map_err(|e| CliError::failed(e.to_string()))?;
    let global = GlobalArgs {
        kubeconfig: Some(dir.join("kubeconfig")),
        contexts: vec!["cluster1".into(), "cluster2".into(), "cluster3".into()],
        read_only: true,
        ..Default::default()
    };
    let (clusters, _) = crate::cli::fleet::registry(&global).await?;
    let mut inv = Inventory::start(&clusters);
    let first = inv.settled(Duration::from_secs(20)).await;
    let mut app = AppState::new(first, crate::tui::keymap::Keymap::builtin("default"), true, chrono::Utc::now());
    let mut term = Terminal::new(TestBackend::new(200, 60)).map_err(|e| CliError::failed(e.to_string()))?;
    let c1 = fleet.cluster("cluster1").cloned().ok_or_else(|| CliError::failed("no cluster1"))?;
    let pods_rt = c1.resource("", "v1", "pods").ok_or_else(|| CliError::failed("no pods"))?;
    let pod = c1
        .store()
        .all_of(&pods_rt)
        .iter()
        .find(|p| p.labels().and_then(|l| l.get("app")).and_then(|a| a.as_str()) == Some("ratings"))
        .map(|p| p.name().to_string())
        .ok_or_else(|| CliError::failed("no ratings pod"))?;
    let sent = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<u64, Instant>::new()));
    let writer = {
        let sent = sent.clone();
        let c1 = c1.clone();
        tokio::spawn(async move {
            // 4 events every 2 ms: 2,000 pod events per second for 5 s.
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            let opts = meshdeck_sim::store::WriteOptions { manager: "bench".into(), ..Default::default() };
            let started = Instant::now();
            for n in 1..=CHURN_EVENTS {
                if n % 4 == 1 {
                    tick.tick().await;
                }
                let patch = serde_json::json!({"metadata": {"labels": {"version": format!("b{n}")}}});
                sent.lock().unwrap_or_else(|p| p.into_inner()).insert(n, Instant::now());
                let _ = c1.store().merge_patch(&pods_rt, "default", &pod, &patch, &opts);
            }
            started.elapsed()
        })
    };
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut last_seen = 0u64;
    // Until the writer is done, and a second more for the last events to show.
    let mut done_at: Option<Instant> = None;
    while done_at.is_none_or(|d| d.elapsed() < Duration::from_secs(1)) && started.elapsed() < Duration::from_secs(60) {
        if done_at.is_none() && writer.is_finished() {
            done_at = Some(Instant::now());
        }
        if tokio::time::timeout(Duration::from_millis(500), inv.snapshots.changed()).await.is_err() {
            continue;
        }
        let snap = inv.snapshots.borrow_and_update().clone();
        update(&mut app, Msg::Fleet(snap.clone()));
        draw(&mut term, &app)?;
        let newest = snap
            .service("ratings.default")
            .and_then(|r| r.clusters.get("cluster1"))
            .and_then(|p| p.versions.keys().filter_map(|v| v.strip_prefix('b')?.parse::<u64>().ok()).max());
        if let Some(n) = newest.filter(|n| *n > last_seen) {
            last_seen = n;
            if let Some(t) = sent.lock().unwrap_or_else(|p| p.into_inner()).get(&n) {
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    let wrote_for = writer.await.map_err(|e| CliError::failed(e.to_string()))?;
    let rate = CHURN_EVENTS as f64 / wrote_for.as_secs_f64().max(1e-9);
    println!(
        "churn: {rate:.0} pod events/s (asked: 2,000/s; the in-process sim writes them) for {:.1} s: event-to-screen p50 {:.0} ms, p99 {:.0} ms over {} screens (snapshots are coalesced every 100 ms)",
        wrote_for.as_secs_f64(),
        percentile(&mut latencies.clone(), 0.5),
        percentile(&mut latencies, 0.99),
        latencies.len()
    );

    // 3. Idle: the loop's work when nothing happens (1 Hz ticks, health probes).
    let cpu_before = cpu_seconds().unwrap_or(0.0);
    let idle = Instant::now();
    let mut frames = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while idle.elapsed() < Duration::from_secs(10) {
        tokio::select! {
            _ = tick.tick() => {
                update(&mut app, Msg::Tick(chrono::Utc::now()));
                draw(&mut term, &app)?;
                frames += 1;
            }
            changed = inv.snapshots.changed() => {
                if changed.is_ok() {
                    let snap = inv.snapshots.borrow_and_update().clone();
                    update(&mut app, Msg::Fleet(snap));
                    draw(&mut term, &app)?;
                    frames += 1;
                }
            }
        }
    }
    let cpu = cpu_seconds().unwrap_or(0.0) - cpu_before;
    println!(
        "idle: {frames} frames in 10 s; CPU {:.2}% of one core (cockpit loop, watchers and the in-process sim together)",
        cpu * 100.0 / 10.0
    );
    Ok(())
}
