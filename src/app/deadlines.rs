//! A connection's two read deadlines: how long its first request's head may take to arrive, and
//! how long it may then sit idle before the next.
//!
//! hyper 1 has one timer for both. Its `header_read_timeout` starts whenever the connection is
//! waiting for a head, idle time included, so a value short enough to cut off slow headers
//! (10 s) also closes kept-alive connections sooner than the clients and load balancers that keep
//! them expect. A request sent on a connection the server is closing at that moment fails in
//! flight: a load balancer answers it 502 (an AWS ALB keeps idle connections 60 s), a client
//! pool reports a broken connection. So hyper's timer is given the idle timeout, and
//! [`Deadlined`] cuts off a new connection whose first head has not arrived within the header
//! timeout of its start. Later heads need no timer of their own: hyper's bounds the idle time
//! and the head together, so a client that has been answered once can hold its connection no
//! longer by sending slowly than by sending nothing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The first head's progress: `started` once a byte other than a line break came (leading
/// empty lines, which parsers skip, do not end a head); `at_line_start` after a line feed and
/// any carriage returns, where one more line feed ends it. A head ends at an empty line,
/// `\r\n\r\n` or the bare `\n\n` parsers also accept; the end may span reads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Scan {
    started: bool,
    at_line_start: bool,
}

/// An accepted connection whose first request head must arrive within `header_timeout` of its
/// wrapping (when the connection's task starts, after any TLS handshake). Once it has, or once
/// the server has written anything (an answer means the head was read, whatever the scan saw),
/// the wrapper only passes bytes through.
pub struct Deadlined<I> {
    io: I,
    /// When the first head is due; `None` once it is in.
    due: Option<Instant>,
    scan: Scan,
    /// The timer for `due`, made only when a read must wait while the head is due (a head that
    /// comes in one read, as most do, needs none) and dropped with `due`, so a connection past
    /// its first head holds no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<I> Deadlined<I> {
    /// Wraps a connection just accepted: its first head is due within `header_timeout`.
    pub fn new(io: I, header_timeout: Duration) -> Self {
        Self { io, due: Some(Instant::now() + header_timeout), scan: Scan::default(), timer: None }
    }

    /// Takes note of bytes just read.
    fn on_read(&mut self, bytes: &[u8]) {
        if self.due.is_none() {
            return;
        }
        let Scan { mut started, mut at_line_start } = self.scan;
        for &byte in bytes {
            match byte {
                b'\n' if started && at_line_start => return self.head_in(),
                b'\n' => at_line_start = true,
                b'\r' => {}
                _ => (started, at_line_start) = (true, false),
            }
        }
        self.scan = Scan { started, at_line_start };
    }

    fn head_in(&mut self) {
        self.due = None;
        self.timer = None;
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Deadlined<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.on_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if let Some(due) = this.due {
                    let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                    ready!(timer.as_mut().poll(cx));
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the request's headers did not arrive within the header timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Deadlined<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.head_in();
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.head_in();
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn fresh() -> Deadlined<()> {
        Deadlined::new((), Duration::from_secs(1))
    }

    #[tokio::test]
    async fn a_head_ends_at_its_empty_line_even_across_reads() {
        let mut conn = fresh();
        conn.on_read(b"\r\n\r\n");
        assert_eq!(conn.scan, Scan { started: false, at_line_start: true }, "leading empty lines end nothing");
        assert!(conn.due.is_some());
        conn.on_read(b"POST /graphql HTTP/1.1\r\nHost: x\r");
        assert_eq!(conn.scan, Scan { started: true, at_line_start: false });
        conn.on_read(b"\n\r");
        assert_eq!(conn.scan, Scan { started: true, at_line_start: true });
        assert!(conn.due.is_some());
        conn.on_read(b"\n{\"query\":\"{ a }\"}");
        assert!(conn.due.is_none(), "the head is in");
        let mut bare = fresh();
        bare.on_read(b"GET / HTTP/1.1\nHost: x\n\n");
        assert!(bare.due.is_none(), "bare line feeds end a head too");
    }

    #[tokio::test]
    async fn an_answer_means_the_head_is_in_whatever_the_scan_saw() {
        let mut conn = fresh();
        conn.on_read(b"GET / HTTP/1.1\r\nHost: x\r\n");
        assert!(conn.due.is_some());
        conn.head_in();
        assert!(conn.due.is_none() && conn.timer.is_none());
        let (mut client, server) = tokio::io::duplex(1024);
        let mut conn = Deadlined::new(server, Duration::from_millis(100));
        client.write_all(b"GET / HTTP/1.1\r\nHost").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(conn.read(&mut buf).await.unwrap() > 0);
        conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await.unwrap();
        let after = tokio::time::timeout(Duration::from_millis(400), conn.read(&mut buf)).await;
        assert!(after.is_err(), "no deadline after an answer: {after:?}");
    }

    /// The timer itself, through `poll_read`, in three cases run at once (real time: only lower
    /// bounds on elapsed time are asserted, and waits are wide for a loaded machine).
    #[tokio::test]
    async fn a_first_head_that_stops_coming_times_out_and_an_idle_connection_does_not() {
        let timeout = Duration::from_millis(600);
        // Nothing sent: cut off once the head is due.
        let silent = async {
            let started = Instant::now();
            let (_client, server) = tokio::io::duplex(64);
            let mut buf = [0u8; 64];
            let cut = Deadlined::new(server, timeout).read(&mut buf).await.expect_err("a silent connection is cut");
            assert_eq!(cut.kind(), io::ErrorKind::TimedOut);
            assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
        };
        // Part of a head, then nothing: cut off too.
        let partial = async {
            let (mut client, server) = tokio::io::duplex(1024);
            let mut conn = Deadlined::new(server, timeout);
            let mut buf = [0u8; 64];
            client.write_all(b"GET / HTTP/1.1\r\nHost").await.unwrap();
            assert!(conn.read(&mut buf).await.unwrap() > 0);
            let cut = conn.read(&mut buf).await.expect_err("an unfinished head is cut off");
            assert_eq!(cut.kind(), io::ErrorKind::TimedOut);
        };
        // A head that arrives while a read waits (so a timer is made), then an answer, then idle
        // and a later head well past the first's deadline: never cut off by this wrapper.
        let answered = async {
            let (mut client, server) = tokio::io::duplex(1024);
            let mut conn = Deadlined::new(server, timeout);
            let mut buf = [0u8; 64];
            let (read, ()) = tokio::join!(conn.read(&mut buf), async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            });
            assert!(read.unwrap() > 0);
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
            let idle = tokio::time::timeout(timeout * 2, conn.read(&mut buf)).await;
            assert!(idle.is_err(), "idle time is hyper's to bound: {idle:?}");
            client.write_all(b"GET / HTTP/1.1\r\nHost").await.unwrap();
            assert!(conn.read(&mut buf).await.unwrap() > 0);
            let later = tokio::time::timeout(timeout * 2, conn.read(&mut buf)).await;
            assert!(later.is_err(), "a later head is hyper's to bound too: {later:?}");
        };
        tokio::join!(silent, partial, answered);
    }
}
