//! `bench apply`: a plan's check, diff and write across the fleet, against kubectl; a far cluster's round trips.

use super::*;

pub(super) async fn bench_apply(size: &FleetSize, latency: Option<&str>) -> Result<(), CliError> {
    use crate::apply::{ApplyOptions, Confirmation, Pipeline, desired_for_plan, prepare};
    let sim = SimProcess::start(&FleetSize { services: 0, ..size.clone() })?;
    let global = GlobalArgs {
        kubeconfig: Some(sim.kubeconfig.clone()),
        contexts: sim.contexts(size.clusters),
        read_only: false,
        ..Default::default()
    };
    let (clusters, _) = crate::cli::fleet::registry(&global).await?;
    let mut inv = Inventory::start(&clusters);
    let snap = inv.settled(Duration::from_secs(60)).await;
    // Every cluster calls reviews: half to v3 in cluster2, half to v1 in cluster1.
    let from: Vec<String> = sim.contexts(size.clusters);
    let text = format!(
        "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {{name: fleet-canary}}\nspec:\n  service: reviews.default\n  from: {{clusters: [{}]}}\n  split:\n    - {{cluster: cluster2, version: v3, weight: 50}}\n    - {{cluster: cluster1, version: v1, weight: 50}}\n",
        from.join(", ")
    );
    let plan = crate::plan::load("bench.yaml", &text, &snap).map_err(|e| CliError::failed(format!("{e:?}")))?;
    let rendered = crate::render::render(&plan, &snap).map_err(|e| CliError::failed(e.to_string()))?;
    let opts = ApplyOptions { force_conflicts: false, concurrency: 8, progress: None, ..Default::default() };
    let failed = |e: crate::apply::ApplyError| CliError::failed(e.to_string());
    // The pipeline every front uses, with a history of its own: the bench's fleet is its own.
    let state = tempfile::tempdir().map_err(|e| CliError::failed(e.to_string()))?;
    let pipeline = Pipeline::new(&clusters, state.path(), crate::policy::Persona::unrestricted(), opts.clone()).map_err(failed)?;
    let started = Instant::now();
    let prepared = pipeline.plan(&plan, &rendered, &[]).await.map_err(failed)?;
    let t_prepare = started.elapsed();
    let written = pipeline.write(prepared, Confirmation::Benchmark, || Ok(())).await.map_err(failed)?;
    let t_meshdeck = started.elapsed();
    println!(
        "meshdeck: {} objects on {} clusters ({:?}): preflight + dry run + diff {:.2} s, total with write and verify {:.2} s",
        rendered.object_count(),
        rendered.clusters.len(),
        written.record.report.outcome,
        t_prepare.as_secs_f64(),
        t_meshdeck.as_secs_f64()
    );
    // Back to empty, so kubectl applies the same objects to the same state.
    let (_, undo) = pipeline.rollback(&written.record.id, true).await.map_err(failed)?;
    pipeline.write(undo, Confirmation::Benchmark, || Ok(())).await.map_err(failed)?;
    if let Some(latency) = latency {
        let delay = meshdeck_sim::faults::Fault::parse(&format!("slow:{latency}")).map_err(CliError::bad_input)?;
        let meshdeck_sim::faults::Fault::Slow(delay) = delay else { return Err(CliError::bad_input("--latency takes a duration")) };
        sim.fault("cluster2", &format!("slow:{}ms", delay.as_millis()))?;
        // A process meeting the far cluster for the first time (nothing discovered yet).
        let (clusters, _) = crate::cli::fleet::registry(&global).await?;
        // Only cluster2's part: the round trips a far cluster costs.
        let far = crate::render::RenderedObjects {
            clusters: rendered.clusters.iter().filter(|(c, _)| *c == "cluster2").map(|(c, o)| (c.clone(), o.clone())).collect(),
            ..Default::default()
        };
        let started = Instant::now();
        let desired = desired_for_plan(&clusters, &plan, &far, &Default::default()).await.map_err(|e| CliError::failed(e.to_string()))?;
        let n = desired.iter().filter(|(t, _)| t.cluster == "cluster2").count();
        prepare(&clusters, desired.into_iter().filter(|(t, _)| t.cluster == "cluster2").collect(), &opts)
            .await
            .map_err(|e| CliError::failed(e.to_string()))?;
        let took = started.elapsed();
        sim.fault("cluster2", "healthy")?;
        println!(
            "latency: cluster2 {} ms away: prune scope, preflight, dry run and diff of its {n} objects {:.2} s = {:.1} round trips",
            delay.as_millis(),
            took.as_secs_f64(),
            took.as_secs_f64() / delay.as_secs_f64()
        );
    }
    drop(inv);
    if size.no_kubectl || !kubectl_available() {
        println!("kubectl: not run");
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("meshdeck-bench-render-{}", std::process::id()));
    let _cleanup = tempfile_dir::Dir(dir.clone());
    for (cluster, objs) in &rendered.clusters {
        let cdir = dir.join(cluster);
        std::fs::create_dir_all(&cdir).map_err(|e| CliError::failed(e.to_string()))?;
        for o in objs {
            std::fs::write(cdir.join(crate::render::file_name(o)), crate::yaml::to_yaml(o)).map_err(|e| CliError::failed(e.to_string()))?;
        }
    }
    let kubeconfig = sim.kubeconfig.clone();
    let clusters_with_objects: Vec<String> = rendered.clusters.keys().cloned().collect();
    // kubectl cluster by cluster, then 8 clusters at a time; objects removed in between
    // (by kubectl itself) so both start from the same empty state.
    let run = move |parallel: usize, verb: &'static str| -> Result<Duration, CliError> {
        let home = dir.join("home");
        let started = Instant::now();
        for batch in clusters_with_objects.chunks(parallel) {
            let children: Vec<_> = batch
                .iter()
                .map(|c| {
                    let mut cmd = Command::new("kubectl");
                    cmd.args(["--context", c]);
                    match verb {
                        "apply" => cmd.args(["apply", "--server-side", "-f"]),
                        _ => cmd.args(["delete", "--wait=false", "-f"]),
                    };
                    cmd.arg(dir.join(c)).env("KUBECONFIG", &kubeconfig).env("HOME", &home).stdout(Stdio::null()).stderr(Stdio::piped());
                    cmd.spawn().map(|child| (c.clone(), child)).map_err(|e| CliError::failed(e.to_string()))
                })
                .collect::<Result<_, _>>()?;
            for (c, child) in children {
                let out = child.wait_with_output().map_err(|e| CliError::failed(e.to_string()))?;
                if !out.status.success() {
                    return Err(CliError::failed(format!("kubectl {verb} on {c}: {}", String::from_utf8_lossy(&out.stderr))));
                }
            }
        }
        Ok(started.elapsed())
    };
    let (t_serial, t_parallel) = tokio::task::spawn_blocking(move || -> Result<(Duration, Duration), CliError> {
        let serial = run(1, "apply")?;
        run(8, "delete")?;
        Ok((serial, run(8, "apply")?))
    })
    .await
    .map_err(|e| CliError::failed(e.to_string()))??;
    println!("kubectl: apply --server-side of the same files, cluster by cluster: {:.2} s", t_serial.as_secs_f64());
    println!("kubectl: the same, 8 clusters at a time: {:.2} s", t_parallel.as_secs_f64());
    println!(
        "ratio: meshdeck (checked, all-or-nothing, verified) is {:.1}x faster than cluster by cluster, {:.1}x faster than 8 at a time",
        t_serial.as_secs_f64() / t_meshdeck.as_secs_f64(),
        t_parallel.as_secs_f64() / t_meshdeck.as_secs_f64()
    );
    Ok(())
}
