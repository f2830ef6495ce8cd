//! The HTTP transport under each cluster's kube client. kube builds an HTTP/1.1-only
//! client, so every watch holds its own TLS connection (27 to a sim cluster), each
//! with its own buffers: about 1 MiB per cluster before a single object is kept.
//! API servers speak HTTP/2 (kubectl and client-go use it), so this client offers
//! it: one connection per cluster carries every list and watch. The layers above
//! the connection are kube's own (base URL, credentials, extra headers, retries),
//! so what a request carries is unchanged.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt;
use tower::{BoxError, ServiceBuilder};

/// Idle HTTP/2 connections are pinged this often, and dropped when a ping goes
/// unanswered this long: a cluster that vanishes without closing the connection
/// (a black-holed route) then fails its watches instead of leaving them silent.
/// client-go's values. Flow-control windows adapt to the measured bandwidth-delay
/// product instead of fixed 2 MB per stream (a far cluster still streams a list at
/// full speed; a near one does not buffer megabytes per watch).
const PING_EVERY: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// The concurrent streams an HTTP/2 server is counted on to allow on one connection:
/// RFC 9113 recommends no fewer than 100 (hyper's server allows 200, Go's 250). hyper's
/// client never opens a second connection when a server's limit is reached: a request
/// past it waits for a stream to end, and a watch never ends.
const STREAMS_A_SERVER_ALLOWS: usize = 100;

/// What a cluster keeps open besides its per-namespace watches: the cluster-wide
/// watches (mesh config, istiod, the istio-system namespace, remote secrets, six
/// Istio kinds), the probe and identity calls, and an apply's 16 calls in flight,
/// with room to spare. `inventory::watch` tests that this holds.
const OTHER_STREAMS: usize = 32;

/// The streams one cluster may keep open at once, watching `watched_namespaces`
/// namespaces one by one (0: all at once): pods and services are watched per namespace.
pub fn streams_needed(watched_namespaces: usize) -> usize {
    2 * watched_namespaces.max(1) + OTHER_STREAMS
}

/// The kube client for `config`, for a cluster watched in `watched_namespaces`
/// namespaces one by one (0: all at once). A proxy keeps kube's own client (its
/// tunnelling connectors are HTTP/1.1 only), and so does a cluster with more
/// watches than a server is counted on to allow on one HTTP/2 connection.
pub fn client(config: kube::Config, watched_namespaces: usize) -> kube::Result<kube::Client> {
    if config.proxy_url.is_some() || streams_needed(watched_namespaces) > STREAMS_A_SERVER_ALLOWS {
        return kube::Client::try_from(config);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let tls = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config.rustls_client_config()?).https_or_http();
    let tls = match &config.tls_server_name {
        Some(name) => {
            let name = name.clone().try_into().map_err(|e| kube::Error::RustlsTls(kube::client::RustlsTlsError::InvalidServerName(e)))?;
            tls.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => tls,
    };
    let connector = ConnectTimeout { inner: tls.enable_all_versions().wrap_connector(http), timeout: config.connect_timeout };
    let transport = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .http2_adaptive_window(true)
        .http2_keep_alive_interval(PING_EVERY)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build::<_, kube::client::Body>(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.default_retry.then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry())))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(transport);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// A connector whose whole connect, TLS handshake included, has a deadline: a server
/// that accepts the connection and never answers fails within the connect timeout.
#[derive(Clone)]
struct ConnectTimeout<C> {
    inner: C,
    timeout: Option<Duration>,
}

impl<C> tower::Service<http::Uri> for ConnectTimeout<C>
where
    C: tower::Service<http::Uri> + Send,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connect = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match timeout {
                Some(t) => match tokio::time::timeout(t, connect).await {
                    Ok(r) => r.map_err(Into::into),
                    Err(_) => Err(format!("no connection within {}s", t.as_secs()).into()),
                },
                None => connect.await.map_err(Into::into),
            }
        })
    }
}
