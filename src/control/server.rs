//! The control socket server: reads request lines (bounded), runs each
//! command on a blocking thread, streams progress and the final reply. A
//! failing accept (the daemon out of descriptors) pauses, growing, instead
//! of spinning, and is logged at a bounded rate.

use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use super::{parse_request, Request, MAX_LINE};
use crate::error::{Error, Result};
use crate::report::{to_value, PingReply, Progress};
use crate::resources::AcceptBackoff;
use crate::service::Service;

/// Bind the socket (replacing a stale one; refusing if a daemon answers).
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::Other(format!(
                "another minigcs daemon is listening on {}",
                path.display()
            )));
        }
        std::fs::remove_file(path)?;
    }
    // Create with a restrictive umask so there is no window with looser mode.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serve until `shutdown` resolves. `mountpoint` lets `info` take paths.
pub async fn serve(
    service: Arc<Service>,
    listener: UnixListener,
    mountpoint: Option<PathBuf>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(shutdown);
    let mut backoff = AcceptBackoff::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff.succeeded();
                    let service = service.clone();
                    let mountpoint = mountpoint.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle_connection(service, stream, mountpoint).await {
                            log::debug!("control connection: {e}");
                        }
                    });
                }
                Err(e) => {
                    if let Some(pause) = backoff.failed_and_logged("control socket accept", &e) {
                        tokio::select! {
                            _ = &mut shutdown => return,
                            _ = tokio::time::sleep(pause) => {}
                        }
                    }
                }
            }
        }
    }
}

async fn write_line(stream: &mut UnixStream, value: &Value) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(value).expect("json serializes");
    bytes.push(b'\n');
    stream.write_all(&bytes).await
}

async fn handle_connection(
    service: Arc<Service>,
    mut stream: UnixStream,
    mountpoint: Option<PathBuf>,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let mut discarding = false;
    let mut read_buf = vec![0u8; 64 * 1024];
    loop {
        // Serve every complete line already buffered.
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            if discarding {
                discarding = false;
                continue;
            }
            let line = &line[..line.len() - 1];
            match parse_request(line) {
                Ok(req) => run_request(&service, &mut stream, req, mountpoint.as_deref()).await?,
                Err(e) => write_line(&mut stream, &json!({"ok": false, "error": e})).await?,
            }
        }
        if buf.len() > MAX_LINE {
            if !discarding {
                write_line(
                    &mut stream,
                    &json!({"ok": false, "error": format!("request line longer than {MAX_LINE} bytes")}),
                )
                .await?;
            }
            discarding = true;
            buf.clear();
        }
        let n = stream.read(&mut read_buf).await?;
        if n == 0 {
            if !buf.is_empty() && !discarding {
                let _ = write_line(
                    &mut stream,
                    &json!({"ok": false, "error": "connection closed in the middle of a request line"}),
                )
                .await;
            }
            return Ok(());
        }
        buf.extend_from_slice(&read_buf[..n]);
    }
}

async fn run_request(
    service: &Arc<Service>,
    stream: &mut UnixStream,
    req: Request,
    mountpoint: Option<&Path>,
) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let svc = service.clone();
    let mountpoint = mountpoint.map(Path::to_path_buf);
    let job = tokio::task::spawn_blocking(move || execute(&svc, req, mountpoint.as_deref(), &tx));
    while let Some(progress) = rx.recv().await {
        write_line(stream, &json!({ "progress": progress })).await?;
    }
    let reply = match job.await {
        Ok(Ok(data)) => json!({"ok": true, "data": data}),
        Ok(Err(e)) => json!({"ok": false, "error": e.to_string()}),
        Err(e) => json!({"ok": false, "error": format!("command failed: {e}")}),
    };
    write_line(stream, &reply).await
}

/// Run one command (blocking) and return its report as the reply's `data`.
/// Progress goes to `tx`.
pub fn execute(
    service: &Arc<Service>,
    req: Request,
    mountpoint: Option<&Path>,
    tx: &mpsc::UnboundedSender<Value>,
) -> Result<Value> {
    let send = |p: &Progress| {
        let _ = tx.send(to_value(p));
    };
    let send = std::sync::Mutex::new(send);
    let progress = |p: &Progress| (send.lock().unwrap())(p);
    match req {
        Request::Ping => Ok(to_value(&PingReply::now())),
        Request::Stats => Ok(to_value(&service.stats_report()?)),
        Request::Health => Ok(to_value(&service.health_report()?)),
        Request::Nodes => Ok(to_value(&service.nodes_report()?)),
        Request::Workers => Ok(to_value(&service.workers_report())),
        Request::Snapshot => Ok(to_value(&service.snapshot_metadata()?)),
        Request::Metrics => Ok(service.metrics().summary_json()),
        Request::Recover { node } => Ok(to_value(&service.recover_node(&node, &progress)?)),
        Request::Scrub { repair } => Ok(to_value(&service.scrub(repair, &progress)?)),
        Request::Info { key, path } => {
            let key = match (path, mountpoint) {
                (Some(p), Some(m)) => match Path::new(&p).strip_prefix(m) {
                    Ok(rel) => rel.to_string_lossy().into_owned(),
                    Err(_) => key,
                },
                _ => key,
            };
            Ok(to_value(&service.info_report(&key)?))
        }
    }
}
