//! The composition root: raises the descriptor limit, builds the service
//! from a loaded config, starts the background workers, the control socket,
//! the HTTP API, the S3 API and (for `mount`) the FUSE session, then waits for
//! SIGINT/SIGTERM (or an external unmount) and shuts down in order: commit
//! open files, stop the background workers, unmount, stop servers, exit 0.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::service::Service;

/// How long shutdown waits for the control socket and the HTTP API to
/// finish their requests.
const SERVER_GRACE: Duration = Duration::from_secs(10);

/// How long shutdown waits for a background worker to finish its step.
const WORKER_GRACE: Duration = Duration::from_secs(5);

/// Build the service for a config (metrics, nodes, metadata): node folders
/// holding the Python prototype's data are refused before anything is
/// written (the metrics CSV included), then the store is locked, so a
/// second daemon stops here. Its background workers are not started yet
/// (`Service::start_workers`).
pub fn open_service(config: Config) -> Result<Arc<Service>> {
    let checked = Service::check_node_folders(&config)?;
    let metrics = Metrics::new(
        config
            .metrics
            .enabled
            .then(|| config.metrics.output_file.clone()),
    );
    Service::open_checked(Arc::new(config), metrics, checked)
}

fn api_address(config: &Config) -> String {
    let host = if config.api.host == "localhost" {
        "127.0.0.1"
    } else {
        config.api.host.as_str()
    };
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{}", config.api.port)
    } else {
        format!("{host}:{}", config.api.port)
    }
}

/// Run the daemon until a signal. `mountpoint` None = `serve` (no FUSE).
pub fn run(config: Config, mountpoint: Option<&Path>) -> Result<()> {
    match crate::resources::raise_descriptor_limit() {
        Ok(l) => log::debug!(
            "descriptor limit (RLIMIT_NOFILE): soft {} -> {}, hard {}",
            l.soft_before,
            l.soft,
            l.hard
        ),
        Err(e) => log::warn!("cannot raise the descriptor limit (RLIMIT_NOFILE): {e}"),
    }
    if let Some(m) = mountpoint {
        config.check_mount_point(m)?;
    }
    let socket_path = config.control.socket.clone();
    let api_enabled = config.api.enabled;
    let address = api_address(&config);
    let s3_address = config.s3.enabled.then(|| crate::s3::address(&config));
    // Own the store before anything else: a second daemon must not even
    // bind its socket or port, and no worker sweeps before the locks.
    let service = open_service(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("minigcs-io")
        .build()?;
    // Bind the sockets before mounting: a port in use must fail start-up
    // cleanly instead of leaving a mount behind.
    let control_listener = runtime.block_on(async { crate::control::bind(&socket_path) })?;
    // Removed when this function returns, a failed start included.
    let socket_file = crate::control::SocketFile::claim(&socket_path)?;
    let http_listener = if api_enabled {
        Some(
            runtime
                .block_on(tokio::net::TcpListener::bind(&address))
                .map_err(|e| Error::Other(format!("cannot listen on {address}: {e}")))?,
        )
    } else {
        None
    };
    let s3_listener = match &s3_address {
        Some(a) => Some(
            runtime
                .block_on(tokio::net::TcpListener::bind(a))
                .map_err(|e| Error::Other(format!("cannot listen on {a} (s3.port): {e}")))?,
        ),
        None => None,
    };
    service.anchor_journal();
    let workers = service.start_workers();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mount_abs: Option<PathBuf> =
        mountpoint.map(|m| std::path::absolute(m).unwrap_or_else(|_| m.to_path_buf()));
    let control = runtime.spawn(crate::control::serve(
        service.clone(),
        control_listener,
        mount_abs.clone(),
        wait_stop(stop_rx.clone()),
    ));
    let http = http_listener.map(|l| {
        runtime.spawn(crate::http::serve(
            service.clone(),
            l,
            wait_stop(stop_rx.clone()),
        ))
    });
    let s3 = s3_listener.map(|l| {
        runtime.spawn(crate::s3::serve(
            service.clone(),
            l,
            wait_stop(stop_rx.clone()),
        ))
    });
    let mount = match &mount_abs {
        Some(m) => match crate::fuse::mount(service.clone(), m) {
            Ok(h) => {
                log::info!("mounted at {}", m.display());
                Some(h)
            }
            Err(e) => {
                let _ = stop_tx.send(true);
                service.shutdown();
                workers.stop(WORKER_GRACE);
                return Err(Error::Other(format!(
                    "cannot mount at {}: {e}",
                    m.display()
                )));
            }
        },
        None => None,
    };
    log::info!(
        "minigcs {} ready{}: k={} m={} chunk_size={} nodes={} control socket {}",
        env!("CARGO_PKG_VERSION"),
        match service.is_read_only() {
            true => " (read-only: uploads, deletes and changes are refused)",
            false => "",
        },
        service.chunk_store().k(),
        service.chunk_store().m(),
        service.chunk_size(),
        service.chunk_store().nodes().len(),
        socket_path.display()
    );
    // Wait for a signal or for the mount to go away.
    let signalled = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                _ = term.recv() => return Ok::<_, std::io::Error>("SIGTERM"),
                _ = int.recv() => return Ok("SIGINT"),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if mount.as_ref().is_some_and(|m| m.is_finished()) {
                        return Ok("external unmount");
                    }
                }
            }
        }
    })?;
    log::info!("{signalled}: shutting down");
    service.shutdown();
    let busy = workers.stop(WORKER_GRACE);
    if !busy.is_empty() {
        log::warn!("background workers still busy at exit: {}", busy.join(", "));
    }
    if let Some(m) = mount {
        if let Err(e) = m.unmount() {
            log::warn!("unmount: {e}");
        }
    }
    let _ = stop_tx.send(true);
    drop(socket_file);
    // Give the servers a moment to finish their requests. The wait is timed
    // by this thread, not by the runtime's timers, which do not fire while
    // every runtime thread is blocked (e.g. by a node that hangs).
    let (finished_tx, finished) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let _ = control.await;
        if let Some(h) = http {
            let _ = h.await;
        }
        if let Some(h) = s3 {
            let _ = h.await;
        }
        let _ = finished_tx.send(());
    });
    let _ = finished.recv_timeout(SERVER_GRACE);
    runtime.shutdown_timeout(Duration::from_secs(1));
    service.metrics().flush();
    log::info!("stopped cleanly");
    Ok(())
}
