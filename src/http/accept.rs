//! The API's accept loop: at most `api.max_connections` connections are
//! served at once (lowered to what the descriptor limit allows, so clients
//! can never take the descriptors the store needs for shard files, the
//! database and the mount). A connection beyond the cap is accepted and
//! answered at once with `503 Service Unavailable`, `Retry-After: 1` and
//! closed: the client learns promptly and clearly that the server is busy,
//! instead of hanging in the kernel backlog with no answer. An accept that
//! fails for want of descriptors pauses (growing) instead of spinning, and
//! is logged at a bounded rate. Each served connection runs HTTP/1 or
//! HTTP/2 (hyper's auto builder) under the timeouts of [`super::timeouts`].

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use std::convert::Infallible;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use super::timeouts::{
    unsent_bytes, Activity, RequestBody, ResponseBody, Timeouts, Verdict, Watched,
};
use crate::config::Config;
use crate::resources::{self, AcceptBackoff};

/// Refused connections that may wait at once for the client's request to
/// arrive (so closing sends FIN, not RST, and the client reads the 503).
pub const REFUSALS_LINGERING: usize = 64;
/// How long a refused connection waits for the client's request.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The limits one API server runs under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_connections: usize,
    pub timeouts: Timeouts,
}

impl Limits {
    /// From the config and the current descriptor limit; says so when the
    /// descriptor limit lowers `api.max_connections`. When both the HTTP API
    /// and the S3 API are on, each server gets half of the descriptors left
    /// for connections.
    pub fn from_config(config: &Config, descriptor_limit: u64) -> Limits {
        let servers = (u64::from(config.api.enabled) + u64::from(config.s3.enabled)).max(1);
        let reserve = resources::store_reserve(config) + servers * REFUSALS_LINGERING as u64;
        let budget = resources::connection_budget(
            descriptor_limit,
            reserve,
            resources::per_connection(config) * servers,
        );
        let configured = config.api.max_connections;
        if budget < configured {
            log::warn!(
                "HTTP API: serving at most {budget} connections, not api.max_connections {configured}: \
                 the descriptor limit is {descriptor_limit} and the store keeps {reserve} of them \
                 (raise `ulimit -n` to serve more)"
            );
        }
        Limits {
            max_connections: configured.min(budget),
            timeouts: Timeouts {
                header: Duration::from_secs(config.api.header_timeout_secs),
                idle: Duration::from_secs(config.api.idle_timeout_secs),
            },
        }
    }
}

/// Resolves when `rx` says stop; never when its sender is gone unfired.
pub(crate) async fn stopped(mut rx: watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Accept and serve until `stop`; then wait for the open connections to
/// finish (they are asked to close gracefully).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let lingering = Arc::new(Semaphore::new(REFUSALS_LINGERING));
    // Every connection task holds a receiver; all dropped = all finished.
    let (open_tx, open_rx) = watch::channel(());
    let mut backoff = AcceptBackoff::new();
    let stop_accepting = stopped(stop.clone());
    tokio::pin!(stop_accepting);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop_accepting => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                backoff.succeeded();
                let _ = stream.set_nodelay(true);
                match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let task = serve_connection(
                            stream,
                            router.clone(),
                            limits.timeouts,
                            slot,
                            stop.clone(),
                        );
                        let open = open_rx.clone();
                        tokio::spawn(async move {
                            task.await;
                            drop(open);
                        });
                    }
                    Err(_) => refuse(stream, &lingering, limits.max_connections),
                }
            }
            Err(e) => {
                if let Some(pause) = backoff.failed_and_logged("HTTP API accept", &e) {
                    tokio::select! {
                        _ = &mut stop_accepting => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
    drop(listener);
    drop(open_rx);
    open_tx.closed().await;
    Ok(())
}

/// Serve one connection until it ends, times out, or `stop` closes it
/// gracefully. `_slot` is its place under the cap.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    timeouts: Timeouts,
    _slot: OwnedSemaphorePermit,
    stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new(Instant::now()));
    // Valid while `conn` (which owns the stream) lives: for this whole task.
    let fd = stream.as_raw_fd();
    let io = TokioIo::new(Watched::new(stream, activity.clone()));
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let activity = requests.clone();
        let router = router.clone();
        async move {
            let (handler, in_flight) = activity.request_started();
            let req = req.map(|b| Body::new(RequestBody::new(b, activity.clone())));
            let response = match router.oneshot(req).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            drop(handler);
            Ok::<_, Infallible>(response.map(|b| Body::new(ResponseBody::new(b, in_flight))))
        }
    });
    let builder = Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let stop = stopped(stop);
    tokio::pin!(stop);
    let mut stopping = false;
    let mut tick = tokio::time::interval(timeouts.tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    log::debug!("HTTP connection ended: {e}");
                }
                return;
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if let Some(unsent) = unsent_bytes(fd) {
                    activity.send_queue(unsent, now);
                }
                let verdict = activity.verdict(now, &timeouts);
                if verdict != Verdict::Open {
                    log::debug!("HTTP connection closed: {verdict}");
                    return;
                }
            }
            _ = &mut stop, if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The whole reply to a connection over the cap.
fn refusal(max_connections: usize) -> String {
    let body = format!(
        "{{\"detail\":\"too many connections: the API serves at most {max_connections} at once; retry shortly\"}}"
    );
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Answer a connection over the cap with 503 and close it.
fn refuse(stream: TcpStream, lingering: &Arc<Semaphore>, max_connections: usize) {
    crate::warn_limited!(
        "HTTP connection cap",
        "HTTP API: {max_connections} connections open (the cap); answering new ones 503"
    );
    let reply = refusal(max_connections);
    match lingering.clone().try_acquire_owned() {
        Ok(slot) => {
            tokio::spawn(async move {
                linger(stream, reply).await;
                drop(slot);
            });
        }
        Err(_) => close_now(stream, &reply),
    }
}

/// Send the refusal, end our side, then read (and drop) what the client
/// sends for a moment, so the close does not reset the connection before
/// the client has read the 503.
async fn linger(mut stream: TcpStream, reply: String) {
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await?;
        let mut buf = [0u8; 4096];
        while stream.read(&mut buf).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Too many refusals at once: send the refusal straight to the socket (a
/// fresh socket's send buffer takes it whole), drop what already arrived
/// (so the close is a FIN, not a reset) and close.
fn close_now(stream: TcpStream, reply: &str) {
    use std::io::{Read, Write};
    // The std socket stays non-blocking: neither call waits.
    if let Ok(mut socket) = stream.into_std() {
        let _ = socket.write(reply.as_bytes());
        let mut buf = [0u8; 4096];
        while matches!(socket.read(&mut buf), Ok(n) if n > 0) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_refusal_is_a_complete_http_response() {
        let reply = refusal(1024);
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("\r\nretry-after: 1"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(json["detail"].as_str().unwrap().contains("at most 1024"));
    }

    #[test]
    fn the_descriptor_limit_lowers_the_cap_never_raises_it() {
        let config = Config::for_test(Path::new("/t"), &["a", "b", "c"], 2, 1, 1024);
        assert_eq!(Limits::from_config(&config, 1 << 20).max_connections, 1024);
        let low = Limits::from_config(&config, 1024).max_connections;
        assert!(low < 1024 / 4, "{low}");
        assert!(low >= 1);
        let mut small = config.clone();
        small.api.max_connections = 8;
        assert_eq!(Limits::from_config(&small, 1 << 20).max_connections, 8);
    }

    #[test]
    fn the_http_and_s3_apis_share_the_descriptors_for_connections() {
        let config = Config::for_test(Path::new("/t"), &["a", "b", "c"], 2, 1, 1024);
        let alone = Limits::from_config(&config, 4096).max_connections;
        let mut both = config.clone();
        both.s3.enabled = true;
        let shared = Limits::from_config(&both, 4096).max_connections;
        assert!(
            shared * 2 <= alone,
            "{shared} each of 2 servers vs {alone} alone"
        );
        assert!(shared >= 1);
    }
}
