//! Per-connection timeouts of the HTTP API, decided from what the connection
//! is doing rather than from a fixed lifetime:
//!
//! - waiting for a request head (a new connection, or the first byte of the
//!   next request has arrived): closed `api.header_timeout_secs` after the
//!   wait began, however slowly bytes trickle in;
//! - idle between requests: closed after `api.idle_timeout_secs`;
//! - during a request: closed only when no byte has moved either way for
//!   `api.idle_timeout_secs` *and* the client is the one holding things up
//!   (the handler waits for request body bytes that do not come, or the
//!   response is ready but the client does not read it). A slow upload or
//!   download that keeps moving is never cut, nor a request whose handler
//!   is working (a long recovery, a commit). A download counts as moving
//!   while the socket's send queue shrinks: with large kernel buffers a slow
//!   reader frees room (and lets the server write) only now and then.
//!
//! [`Activity`] holds the counters; [`Watched`] (the socket), [`RequestBody`]
//! and [`ResponseBody`] feed them, and [`Activity::verdict`] decides.

use axum::body::Body;
use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The two limits, from `api.header_timeout_secs` and `api.idle_timeout_secs`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

impl Timeouts {
    /// How often a connection checks its verdict: a quarter of the shorter
    /// limit, between 50 ms and 1 s.
    pub fn tick(&self) -> Duration {
        (self.header.min(self.idle) / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// Why a connection is closed, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Open,
    /// The request head did not arrive in time.
    HeaderTimeout,
    /// Nothing happened between requests for too long.
    Idle,
    /// A request stalled on the client with no byte moving.
    Stalled,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Open => "open",
            Verdict::HeaderTimeout => "no complete request head within the header timeout",
            Verdict::Idle => "idle for the idle timeout",
            Verdict::Stalled => "request stalled on the client for the idle timeout",
        })
    }
}

/// What one connection is doing. Times are milliseconds since `origin` (the
/// accept); `head_since` is 0 when no request head is awaited, else 1 + the
/// time the wait began.
pub(crate) struct Activity {
    origin: Instant,
    last_byte: AtomicU64,
    head_since: AtomicU64,
    /// Requests whose response has not been sent in full.
    in_flight: AtomicUsize,
    /// Handlers still running.
    handlers: AtomicUsize,
    /// Request bodies whose last read found no bytes from the client.
    bodies_waiting: AtomicUsize,
    /// Response bodies whose last poll found the server not ready.
    responses_producing: AtomicUsize,
    /// The socket's send queue at the last look (`u64::MAX`: not yet seen).
    unsent: AtomicU64,
}

impl Activity {
    /// A connection accepted at `origin`: a request head is awaited.
    pub fn new(origin: Instant) -> Activity {
        Activity {
            origin,
            last_byte: AtomicU64::new(0),
            head_since: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
            handlers: AtomicUsize::new(0),
            bodies_waiting: AtomicUsize::new(0),
            responses_producing: AtomicUsize::new(0),
            unsent: AtomicU64::new(u64::MAX),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// Bytes arrived from the client at `now`.
    pub fn bytes_read(&self, now: Instant) {
        let at = self.ms(now);
        self.last_byte.store(at, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            // The first byte of the next request head starts its clock.
            let _ =
                self.head_since
                    .compare_exchange(0, at + 1, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Bytes went out to the client at `now`.
    pub fn bytes_written(&self, now: Instant) {
        self.last_byte.store(self.ms(now), Ordering::Relaxed);
    }

    /// The socket's send queue held `unsent` bytes at `now`; if it shrank
    /// since the last look, the client has been reading.
    pub fn send_queue(&self, unsent: u64, now: Instant) {
        if unsent < self.unsent.swap(unsent, Ordering::Relaxed) {
            self.bytes_written(now);
        }
    }

    /// A request head arrived and its handler starts. The returned guards
    /// end the handler and, later, the request.
    pub fn request_started(self: &Arc<Self>) -> (Handler, InFlight) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.handlers.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
        (Handler(self.clone()), InFlight(self.clone()))
    }

    /// Is the server, not the client, what the connection waits for?
    fn server_busy(&self) -> bool {
        self.responses_producing.load(Ordering::Acquire) > 0
            || self.handlers.load(Ordering::Acquire) > self.bodies_waiting.load(Ordering::Acquire)
    }

    /// Close the connection at `now`, and why?
    pub fn verdict(&self, now: Instant, limits: &Timeouts) -> Verdict {
        let now = self.ms(now);
        let elapsed_since = |at: u64| Duration::from_millis(now.saturating_sub(at));
        let last_byte = self.last_byte.load(Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) > 0 {
            if !self.server_busy() && elapsed_since(last_byte) >= limits.idle {
                return Verdict::Stalled;
            }
            return Verdict::Open;
        }
        match self.head_since.load(Ordering::Acquire) {
            0 if elapsed_since(last_byte) >= limits.idle => Verdict::Idle,
            0 => Verdict::Open,
            since if elapsed_since(since - 1) >= limits.header => Verdict::HeaderTimeout,
            _ => Verdict::Open,
        }
    }
}

/// Bytes in the send queue of socket `fd` (written, not yet acknowledged
/// by the peer), or None if the kernel does not say.
pub(crate) fn unsent_bytes(fd: std::os::fd::RawFd) -> Option<u64> {
    let mut unsent: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) stores one c_int through the pointer, which
    // points to a live local; `fd` is a socket the caller keeps open.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut unsent) };
    (rc == 0).then(|| unsent.max(0) as u64)
}

/// A running handler; dropped when it has produced its response (or was
/// abandoned).
pub(crate) struct Handler(Arc<Activity>);

impl Drop for Handler {
    fn drop(&mut self) {
        self.0.handlers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request in flight; dropped when its response body is finished (or
/// abandoned). The idle clock restarts then.
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_byte.store(a.ms(Instant::now()), Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The accepted socket, reporting every byte moved to its [`Activity`].
pub(crate) struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    pub fn new(stream: TcpStream, activity: Arc<Activity>) -> Watched {
        Watched { stream, activity }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_read(Instant::now());
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.bytes_written(Instant::now());
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.bytes_written(Instant::now());
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Counts one body as waiting while its last poll was pending.
struct PendingFlag {
    set: bool,
}

impl PendingFlag {
    fn update(&mut self, pending: bool, counter: &AtomicUsize) {
        if pending != self.set {
            if pending {
                counter.fetch_add(1, Ordering::AcqRel);
            } else {
                counter.fetch_sub(1, Ordering::AcqRel);
            }
            self.set = pending;
        }
    }
}

/// A request body: while a read of it is pending, the handler waits for the
/// client.
pub(crate) struct RequestBody<B> {
    inner: B,
    activity: Arc<Activity>,
    waiting: PendingFlag,
}

impl<B> RequestBody<B> {
    pub fn new(inner: B, activity: Arc<Activity>) -> RequestBody<B> {
        RequestBody {
            inner,
            activity,
            waiting: PendingFlag { set: false },
        }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for RequestBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        this.waiting
            .update(polled.is_pending(), &this.activity.bodies_waiting);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for RequestBody<B> {
    fn drop(&mut self) {
        self.waiting.update(false, &self.activity.bodies_waiting);
    }
}

/// A response body: while a poll of it is pending, the server is producing
/// bytes; it ends the request when finished or dropped.
pub(crate) struct ResponseBody {
    inner: Body,
    in_flight: InFlight,
    producing: PendingFlag,
}

impl ResponseBody {
    pub fn new(inner: Body, in_flight: InFlight) -> ResponseBody {
        ResponseBody {
            inner,
            in_flight,
            producing: PendingFlag { set: false },
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        this.producing
            .update(polled.is_pending(), &this.in_flight.0.responses_producing);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.producing
            .update(false, &self.in_flight.0.responses_producing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    fn at(origin: Instant, secs: u64) -> Instant {
        origin + Duration::from_secs(secs)
    }

    #[test]
    fn a_connection_that_sends_nothing_or_half_a_head_hits_the_header_timeout() {
        let t0 = Instant::now();
        let silent = Activity::new(t0);
        assert_eq!(silent.verdict(at(t0, 9), &LIMITS), Verdict::Open);
        assert_eq!(silent.verdict(at(t0, 10), &LIMITS), Verdict::HeaderTimeout);
        // Trickling bytes of the head does not extend the deadline.
        let trickle = Activity::new(t0);
        for s in 0..10 {
            trickle.bytes_read(at(t0, s));
        }
        assert_eq!(trickle.verdict(at(t0, 10), &LIMITS), Verdict::HeaderTimeout);
    }

    #[test]
    fn between_requests_the_idle_timeout_applies_until_the_next_head_begins() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::new(t0));
        a.bytes_read(at(t0, 1));
        let (handler, in_flight) = a.request_started();
        drop(handler);
        a.bytes_written(at(t0, 2));
        drop(in_flight);
        let end = Instant::now();
        assert_eq!(
            a.verdict(end + Duration::from_secs(59), &LIMITS),
            Verdict::Open
        );
        assert_eq!(
            a.verdict(end + Duration::from_secs(60), &LIMITS),
            Verdict::Idle
        );
        // The first byte of the next head starts the header clock.
        a.bytes_read(end + Duration::from_secs(30));
        assert_eq!(
            a.verdict(end + Duration::from_secs(39), &LIMITS),
            Verdict::Open
        );
        assert_eq!(
            a.verdict(end + Duration::from_secs(40), &LIMITS),
            Verdict::HeaderTimeout
        );
    }

    #[test]
    fn a_working_handler_is_never_cut_but_a_client_that_stops_sending_is() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::new(t0));
        let (handler, in_flight) = a.request_started();
        // The handler works (e.g. a recovery) without any byte moving.
        assert_eq!(a.verdict(at(t0, 3600), &LIMITS), Verdict::Open);
        // It now waits for request body bytes that never come.
        a.bodies_waiting.fetch_add(1, Ordering::AcqRel);
        assert_eq!(a.verdict(at(t0, 59), &LIMITS), Verdict::Open);
        assert_eq!(a.verdict(at(t0, 60), &LIMITS), Verdict::Stalled);
        a.bytes_read(at(t0, 30));
        assert_eq!(a.verdict(at(t0, 89), &LIMITS), Verdict::Open);
        assert_eq!(a.verdict(at(t0, 90), &LIMITS), Verdict::Stalled);
        a.bodies_waiting.fetch_sub(1, Ordering::AcqRel);
        drop(handler);
        // The response is ready but the client does not read it.
        assert_eq!(a.verdict(at(t0, 90), &LIMITS), Verdict::Stalled);
        // While the server produces the body, no byte moving is its own doing.
        a.responses_producing.fetch_add(1, Ordering::AcqRel);
        assert_eq!(a.verdict(at(t0, 600), &LIMITS), Verdict::Open);
        a.responses_producing.fetch_sub(1, Ordering::AcqRel);
        drop(in_flight);
        assert_eq!(a.verdict(Instant::now(), &LIMITS), Verdict::Open);
    }

    #[test]
    fn a_draining_send_queue_is_a_download_moving() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::new(t0));
        let (handler, _in_flight) = a.request_started();
        drop(handler);
        // The server wrote 4 MiB at once; the client reads them slowly.
        a.send_queue(4 << 20, at(t0, 0));
        for s in 1..300 {
            a.send_queue((4 << 20) - s * 1000, at(t0, s * 50));
            assert_eq!(a.verdict(at(t0, s * 50 + 59), &LIMITS), Verdict::Open);
        }
        // It stops reading: the queue stays put.
        a.send_queue((4 << 20) - 299_000, at(t0, 15_000));
        assert_eq!(a.verdict(at(t0, 299 * 50 + 60), &LIMITS), Verdict::Stalled);
    }

    #[test]
    fn the_send_queue_of_a_real_socket_is_readable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&client);
        assert_eq!(unsent_bytes(fd), Some(0));
    }

    #[test]
    fn a_slow_transfer_that_keeps_moving_is_never_cut() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::new(t0));
        let (_handler, _in_flight) = a.request_started();
        a.bodies_waiting.fetch_add(1, Ordering::AcqRel);
        for s in (0..3600).step_by(30) {
            a.bytes_read(at(t0, s));
            assert_eq!(a.verdict(at(t0, s + 29), &LIMITS), Verdict::Open);
        }
    }

    #[test]
    fn the_check_interval_follows_the_shorter_limit() {
        let short = Timeouts {
            header: Duration::from_secs(2),
            idle: Duration::from_secs(3),
        };
        assert_eq!(short.tick(), Duration::from_millis(500));
        assert_eq!(LIMITS.tick(), Duration::from_secs(1));
    }
}
