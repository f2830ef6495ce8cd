//! `bench sim`: how fast the simulated fleet starts and what it holds.

use super::*;

pub(super) async fn bench_sim(size: &FleetSize) -> Result<(), CliError> {
    let sim = SimProcess::start(size)?;
    println!("sim: {} clusters x {} services: started in {:.2} s", size.clusters, size.services, sim.startup.as_secs_f64());
    let global = GlobalArgs {
        kubeconfig: Some(sim.kubeconfig.clone()),
        contexts: sim.contexts(size.clusters),
        read_only: true,
        ..Default::default()
    };
    let (clusters, _) = crate::cli::fleet::registry(&global).await?;
    let started = Instant::now();
    let mut pods = 0;
    for c in &clusters {
        let client = c.client.clone().map_err(CliError::failed)?;
        let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(client);
        pods += api.list(&kube::api::ListParams::default()).await.map_err(|e| CliError::failed(e.to_string()))?.items.len();
    }
    let t = started.elapsed();
    println!(
        "sim: full pod list of every cluster: {pods} pods in {:.2} s ({:.1} ms per cluster)",
        t.as_secs_f64(),
        t.as_secs_f64() * 1000.0 / clusters.len() as f64
    );
    if let Some(pid) = sim.pid() {
        println!("sim: peak RSS of the sim process: {:.0} MiB", peak_rss_mib(Some(pid)).unwrap_or(f64::NAN));
    }
    Ok(())
}
