//! The control socket server: binds the socket (and removes the file it
//! created, and only that one, when the daemon ends or fails to start),
//! reads request lines (bounded), runs each command on a blocking thread,
//! streams progress and the final reply. A
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
use crate::model::ROOT_INO;
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

/// The socket file this daemon created: removed when dropped (at shutdown,
/// or when start-up fails after the socket was bound), but only while the
/// path still names that same file, so a socket another daemon bound there
/// since is never taken away.
pub struct SocketFile {
    path: PathBuf,
    /// st_dev, st_ino and st_ctime (ns) of the file `bind` created: a file
    /// bound there later may reuse the inode number, not also the time.
    id: (u64, u64, i64, i64),
}

impl SocketFile {
    /// Claim the file just bound at `path`.
    pub fn claim(path: &Path) -> Result<SocketFile> {
        Ok(SocketFile {
            path: path.to_path_buf(),
            id: file_id(path)?,
        })
    }
}

fn file_id(path: &Path) -> std::io::Result<(u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path)?;
    Ok((m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if file_id(&self.path).is_ok_and(|id| id == self.id) {
            if let Err(e) = std::fs::remove_file(&self.path) {
                log::warn!("cannot remove {}: {e}", self.path.display());
            }
        }
    }
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
            let key = info_key(key, path, mountpoint)?;
            let report = match key.is_empty() {
                true => service.info_of(key, service.getattr(ROOT_INO)?),
                false => service.object_info(&key).map_err(|e| match e {
                    Error::NotFound(_) => Error::NotFound(format!(
                        "no file or directory {key:?} in the store; ctl info takes {}",
                        what_info_takes(mountpoint)
                    )),
                    e => e,
                }),
            };
            Ok(to_value(&service.object_report(&report?)))
        }
    }
}

/// The object key `ctl info` asks about. A path inside the mount (`path`,
/// made absolute by the client) becomes its key, the mount point itself
/// the root (key ""); any other absolute path is refused saying what is
/// expected; a relative argument is the key itself (a trailing `/`, as
/// shells complete directory names, is dropped).
fn info_key(key: String, path: Option<String>, mountpoint: Option<&Path>) -> Result<String> {
    if let (Some(p), Some(m)) = (&path, mountpoint) {
        if let Ok(rel) = Path::new(p).strip_prefix(m) {
            return Ok(rel.to_string_lossy().into_owned());
        }
    }
    if key.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "{key} is not inside this store; ctl info takes {}",
            what_info_takes(mountpoint)
        )));
    }
    Ok(key.trim_end_matches('/').to_string())
}

/// What `ctl info` accepts, for error messages.
fn what_info_takes(mountpoint: Option<&Path>) -> String {
    match mountpoint {
        Some(m) => format!(
            "an object key (e.g. docs/report.pdf) or a path inside the mount point {}",
            m.display()
        ),
        None => "an object key (e.g. docs/report.pdf); this daemon serves no mount".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(arg: &str, path: &str, mount: Option<&str>) -> Result<String> {
        info_key(arg.into(), Some(path.into()), mount.map(Path::new))
    }

    #[test]
    fn the_socket_file_goes_with_its_owner_but_never_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(async { bind(&path) }).unwrap();
        let ours = SocketFile::claim(&path).unwrap();
        drop(ours);
        assert!(!path.exists(), "the daemon's own socket file is removed");
        drop(listener);

        // Another daemon's socket bound at the same path since (a moment
        // later: file times tick at the kernel's clock granularity).
        let first = runtime.block_on(async { bind(&path) }).unwrap();
        let stale = SocketFile::claim(&path).unwrap();
        drop(first);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let second = runtime.block_on(async { bind(&path) }).unwrap();
        drop(stale);
        assert!(path.exists(), "a newer daemon's socket file is kept");
        drop(second);
    }

    #[test]
    fn info_takes_paths_inside_the_mount_and_keys() {
        let m = Some("/srv/mnt");
        assert_eq!(
            key("mnt/a/b.txt", "/srv/mnt/a/b.txt", m).unwrap(),
            "a/b.txt"
        );
        assert_eq!(key("/srv/mnt/a", "/srv/mnt/a", m).unwrap(), "a");
        assert_eq!(
            key("/srv/mnt", "/srv/mnt", m).unwrap(),
            "",
            "the mount is the root"
        );
        assert_eq!(key("a/b.txt", "/home/u/a/b.txt", m).unwrap(), "a/b.txt");
        assert_eq!(key("docs/", "/home/u/docs", m).unwrap(), "docs");
        assert_eq!(key("a/b.txt", "/home/u/a/b.txt", None).unwrap(), "a/b.txt");
    }

    #[test]
    fn info_of_a_path_outside_the_mount_says_what_it_takes() {
        let e = key("/etc/passwd", "/etc/passwd", Some("/srv/mnt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/passwd is not inside this store"), "{e}");
        assert!(e.contains("object key"), "{e}");
        assert!(e.contains("inside the mount point /srv/mnt"), "{e}");
        let e = key("/etc/passwd", "/etc/passwd", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("serves no mount"), "{e}");
    }
}
