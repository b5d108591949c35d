//! A connection's two read deadlines: how long a request's head may take to arrive, and how long
//! a kept-alive connection may sit idle between requests.
//!
//! hyper 1 has one timer for both. Its `header_read_timeout` starts when the connection goes
//! idle, so it also closes kept-alive connections, and a value short enough to cut off slow
//! headers (10 s) closes them sooner than the clients and load balancers that keep them expect.
//! A request sent on a connection the server is closing at that moment fails in flight: a load
//! balancer answers it 502 (an AWS ALB keeps idle connections 60 s), a client pool reports a
//! broken connection. So hyper's timer is given the idle timeout, and [`Deadlined`] cuts off a
//! head that started, or a fresh connection's first head, when the header timeout passes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Where the connection is in its current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a head, against the deadline. `started` once a byte other than a line break came
    /// (leading empty lines, which parsers skip, do not end a head); `at_line_start` after a
    /// line feed and any carriage returns, where one more line feed ends it. A head ends at an
    /// empty line, `\r\n\r\n` or the bare `\n\n` parsers also accept; the end may span reads.
    Head { started: bool, at_line_start: bool },
    /// The head is in; its body and its answer follow. An interim (`1xx`) answer, a `101`
    /// upgrade included, leaves the connection here, untimed.
    Rest,
    /// A final answer has started: bytes read now are the next request's if they begin as a
    /// request line does (any empty lines, then a method of `letters` capitals and a space). The
    /// deadline is armed from the first capital.
    Next { letters: u8 },
    /// Bytes after an answer that are no request line (the rest of a body the server did not
    /// read, which hyper drains; a pipelined head's tail): not timed here, until the next answer.
    Untimed,
}

/// An accepted connection whose request heads must arrive within `header_timeout` of their first
/// byte, and a fresh connection's first within `header_timeout` of the accept. Idle time between
/// requests is hyper's to bound (its timer, set to the idle timeout), as is anything not timed
/// here: a pipelined head read with the one before it, bytes that are no request line.
pub struct Deadlined<I> {
    io: I,
    header_timeout: Duration,
    phase: Phase,
    /// When the head being read is due; `None` when none is.
    due: Option<Instant>,
    /// The timer for `due`, made only when a read must wait while a head is due (a head that
    /// comes in one read, as most do, needs none) and dropped with `due`, so an idle or upgraded
    /// connection holds no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<I> Deadlined<I> {
    /// Wraps a connection just accepted: its first head is due within `header_timeout`.
    pub fn new(io: I, header_timeout: Duration) -> Self {
        let due = Some(Instant::now() + header_timeout);
        Self { io, header_timeout, phase: Phase::Head { started: false, at_line_start: false }, due, timer: None }
    }

    /// Takes note of bytes just read.
    fn on_read(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.phase = match (self.phase, byte) {
                (Phase::Rest | Phase::Untimed, _) => return,
                (Phase::Head { started: true, at_line_start: true }, b'\n') => {
                    self.disarm();
                    self.phase = Phase::Rest;
                    return;
                }
                (Phase::Head { started, .. }, b'\n') => Phase::Head { started, at_line_start: true },
                (head @ Phase::Head { .. }, b'\r') => head,
                (Phase::Head { .. }, _) => Phase::Head { started: true, at_line_start: false },
                (Phase::Next { letters: 0 }, b'\r' | b'\n') => Phase::Next { letters: 0 },
                (Phase::Next { letters }, b'A'..=b'Z') if letters < 20 => {
                    if letters == 0 {
                        self.due = Some(Instant::now() + self.header_timeout);
                    }
                    Phase::Next { letters: letters + 1 }
                }
                (Phase::Next { letters }, b' ') if letters > 0 => Phase::Head { started: true, at_line_start: false },
                (Phase::Next { .. }, _) => {
                    self.disarm();
                    self.phase = Phase::Untimed;
                    return;
                }
            };
        }
    }

    /// Takes note of bytes about to be written. A status line means the head it answers is in,
    /// whatever the scan saw; a final (not `1xx`) one makes the next bytes read a new request's.
    fn on_write(&mut self, bytes: &[u8]) {
        if !bytes.starts_with(b"HTTP/1.") {
            return;
        }
        let interim = bytes.get(9) == Some(&b'1');
        self.phase = if interim { Phase::Rest } else { Phase::Next { letters: 0 } };
        self.disarm();
    }

    fn disarm(&mut self) {
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
                    if timer.deadline() != due {
                        timer.as_mut().reset(due);
                    }
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
        self.on_write(buf);
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            self.on_write(first);
        }
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
        let phase = Phase::Head { started: false, at_line_start: false };
        Deadlined { io: (), header_timeout: Duration::from_secs(1), phase, due: None, timer: None }
    }

    #[tokio::test]
    async fn a_head_ends_at_its_empty_line_even_across_reads() {
        let mut conn = fresh();
        conn.on_read(b"\r\n\r\n");
        assert_eq!(conn.phase, Phase::Head { started: false, at_line_start: true }, "leading empty lines end nothing");
        conn.on_read(b"POST /graphql HTTP/1.1\r\nHost: x\r");
        assert_eq!(conn.phase, Phase::Head { started: true, at_line_start: false });
        conn.on_read(b"\n\r");
        assert_eq!(conn.phase, Phase::Head { started: true, at_line_start: true });
        conn.on_read(b"\n{\"query\":\"{ a }\"}\r\n\r\n");
        assert_eq!(conn.phase, Phase::Rest, "a body's bytes are not a head");
        let mut bare = fresh();
        bare.on_read(b"GET / HTTP/1.1\nHost: x\n\n");
        assert_eq!(bare.phase, Phase::Rest, "bare line feeds end a head too");
    }

    #[tokio::test]
    async fn a_final_answer_makes_a_request_line_read_next_a_timed_head() {
        let mut conn = fresh();
        conn.on_read(b"GET / HTTP/1.1\r\n\r\n");
        conn.on_write(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(conn.phase, Phase::Rest, "an interim answer does not end the request");
        conn.on_read(b"body bytes");
        assert!(conn.due.is_none(), "a body is not timed as a head");
        conn.on_write(b"HTTP/1.1 200 OK\r\n");
        conn.on_write(b"HTTP/1.1 is what this body says");
        assert_eq!((conn.phase, conn.due.is_none()), (Phase::Next { letters: 0 }, true), "idle: untimed");
        conn.on_read(b"\r\nPO");
        assert_eq!(conn.phase, Phase::Next { letters: 2 });
        assert!(conn.due.is_some(), "timed from the method's first letter");
        conn.on_read(b"ST /graphql HTTP/1.1\r\n");
        assert_eq!(conn.phase, Phase::Head { started: true, at_line_start: true });
        assert!(conn.due.is_some());
    }

    #[tokio::test]
    async fn what_follows_an_answer_and_is_no_request_line_is_not_timed() {
        for leftover in [&b"{\"query\":\"{ a }\"}"[..], b"Ada Lovelace\"}", b"\r\n", b"X-Tail: 1\r\n\r\n"] {
            let mut conn = fresh();
            conn.on_read(b"POST /graphql HTTP/1.1\r\ncontent-length: 9999\r\n\r\n");
            conn.on_write(b"HTTP/1.1 429 Too Many Requests\r\n");
            conn.on_read(leftover);
            assert!(conn.due.is_none(), "{}", String::from_utf8_lossy(leftover));
            assert!(matches!(conn.phase, Phase::Untimed | Phase::Next { letters: 0 }));
        }
    }

    #[tokio::test]
    async fn an_answer_to_a_head_not_recognised_still_ends_it() {
        let mut conn = fresh();
        conn.due = Some(Instant::now() + Duration::from_secs(1));
        conn.on_read(b"GET / HTTP/1.1\r\nHost: x\r\n");
        conn.on_write(b"HTTP/1.1 400 Bad Request\r\n");
        assert_eq!(conn.phase, Phase::Next { letters: 0 });
        assert!(conn.due.is_none());
    }

    #[tokio::test]
    async fn an_upgraded_connection_is_never_timed_again() {
        let mut conn = fresh();
        conn.on_read(b"GET /graphql HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
        conn.on_write(b"HTTP/1.1 101 Switching Protocols\r\n");
        conn.on_read(b"\x81\x05GET hello");
        assert_eq!(conn.phase, Phase::Rest);
        assert!(conn.due.is_none());
    }

    /// The timer itself, through `poll_read` (real time, so short; only lower bounds asserted).
    #[tokio::test]
    async fn a_head_that_stops_coming_times_out_and_an_idle_connection_does_not() {
        let timeout = Duration::from_millis(200);
        let (mut client, server) = tokio::io::duplex(1024);
        let mut conn = Deadlined::new(server, timeout);
        let mut buf = [0u8; 256];
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(conn.read(&mut buf).await.unwrap() > 0);
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        let idle = tokio::time::timeout(timeout * 3, conn.read(&mut buf)).await;
        assert!(idle.is_err(), "an idle connection is not this wrapper's to close: {idle:?}");
        client.write_all(b"GET / HTTP/1.1\r\nHost").await.unwrap();
        assert!(conn.read(&mut buf).await.unwrap() > 0);
        let started = Instant::now();
        let cut = conn.read(&mut buf).await.expect_err("an unfinished head times out");
        assert_eq!(cut.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= timeout / 2, "{:?}", started.elapsed());
        let (_client, server) = tokio::io::duplex(64);
        let (mut fresh, started) = (Deadlined::new(server, timeout), Instant::now());
        let cut = fresh.read(&mut buf).await.expect_err("a new connection that sends nothing times out");
        assert_eq!(cut.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    }
}
