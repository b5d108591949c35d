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
    /// Reading a head; `at_line_start` after a line feed (and any carriage returns), where one
    /// more line feed ends the head. A head ends at an empty line, `\r\n\r\n` or the bare `\n\n`
    /// that HTTP parsers also accept; the end may span reads.
    Head { at_line_start: bool },
    /// The head is in; the body and the response follow. `answered` once a final (not `1xx`)
    /// response has started: the next bytes read are the next request's head.
    Rest { answered: bool },
}

/// An accepted connection whose request heads must arrive within `header_timeout` of their first
/// byte, and a fresh connection's first within `header_timeout` of the accept. Idle time between
/// requests is hyper's to bound (its timer, set to the idle timeout). Bytes after a head's end in
/// the same read (a pipelined request) are not timed here; hyper's timer still bounds them.
/// An upgraded connection (WebSocket) stays in [`Phase::Rest`]: its `101` is informational.
pub struct Deadlined<I> {
    io: I,
    header_timeout: Duration,
    phase: Phase,
    /// Armed while a head is being read; dropped when it is in, so an idle or upgraded
    /// connection holds no timer.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<I> Deadlined<I> {
    /// Wraps a connection just accepted: its first head is due within `header_timeout`.
    pub fn new(io: I, header_timeout: Duration) -> Self {
        let deadline = Some(Box::pin(tokio::time::sleep(header_timeout)));
        Self { io, header_timeout, phase: Phase::Head { at_line_start: false }, deadline }
    }

    /// Takes note of bytes just read.
    fn read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.phase == (Phase::Rest { answered: true }) {
            self.phase = Phase::Head { at_line_start: false };
            self.deadline = Some(Box::pin(tokio::time::sleep_until(Instant::now() + self.header_timeout)));
        }
        let Phase::Head { mut at_line_start } = self.phase else { return };
        for &byte in bytes {
            match byte {
                b'\n' if at_line_start => {
                    self.phase = Phase::Rest { answered: false };
                    self.deadline = None;
                    return;
                }
                b'\n' => at_line_start = true,
                b'\r' => {}
                _ => at_line_start = false,
            }
        }
        self.phase = Phase::Head { at_line_start };
    }

    /// Takes note of bytes about to be written. A response's status line means the head is in,
    /// whatever was scanned; a final (not `1xx`) one ends the request.
    fn wrote(&mut self, bytes: &[u8]) {
        if !bytes.starts_with(b"HTTP/1.") || self.phase == (Phase::Rest { answered: true }) {
            return;
        }
        let interim = bytes.get(9) == Some(&b'1');
        self.phase = Phase::Rest { answered: !interim };
        self.deadline = None;
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Deadlined<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut() {
                    ready!(deadline.as_mut().poll(cx));
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
        self.wrote(buf);
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            self.wrote(first);
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
    use super::*;

    fn fresh() -> Deadlined<()> {
        Deadlined {
            io: (),
            header_timeout: Duration::from_secs(1),
            phase: Phase::Head { at_line_start: false },
            deadline: None,
        }
    }

    #[tokio::test]
    async fn a_head_ends_at_its_blank_line_even_across_reads() {
        let mut conn = fresh();
        conn.read(b"POST /graphql HTTP/1.1\r\nHost: x\r");
        assert_eq!(conn.phase, Phase::Head { at_line_start: false });
        conn.read(b"\n\r");
        assert_eq!(conn.phase, Phase::Head { at_line_start: true });
        conn.read(b"\n{\"query\":\"{ a }\"}\r\n\r\n");
        assert_eq!(conn.phase, Phase::Rest { answered: false }, "a body's bytes are not a head");
        let mut bare = fresh();
        bare.read(b"GET / HTTP/1.1\nHost: x\n\n");
        assert_eq!(bare.phase, Phase::Rest { answered: false }, "bare line feeds end a head too");
    }

    #[tokio::test]
    async fn a_final_response_makes_the_next_bytes_a_new_head_with_its_own_deadline() {
        let mut conn = fresh();
        conn.read(b"GET / HTTP/1.1\r\n\r\n");
        conn.wrote(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(conn.phase, Phase::Rest { answered: false }, "an interim response does not end the request");
        conn.read(b"body bytes");
        assert!(conn.deadline.is_none(), "a body is not timed as a head");
        conn.wrote(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(conn.phase, Phase::Rest { answered: true });
        assert!(conn.deadline.is_none(), "idle: no deadline of ours");
        conn.read(b"GET /");
        assert_eq!(conn.phase, Phase::Head { at_line_start: false });
        assert!(conn.deadline.is_some(), "the next head is timed from its first byte");
    }

    #[tokio::test]
    async fn an_answer_to_a_head_not_recognised_still_ends_it() {
        let mut conn = fresh();
        conn.deadline = Some(Box::pin(tokio::time::sleep(Duration::from_secs(1))));
        conn.read(b"GET / HTTP/1.1\r\nHost: x\r\n");
        conn.wrote(b"HTTP/1.1 400 Bad Request\r\n");
        assert_eq!(conn.phase, Phase::Rest { answered: true });
        assert!(conn.deadline.is_none());
    }

    #[tokio::test]
    async fn an_upgraded_connection_is_never_timed_again() {
        let mut conn = fresh();
        conn.read(b"GET /graphql HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
        conn.wrote(b"HTTP/1.1 101 Switching Protocols\r\n");
        conn.read(b"\x81\x05hello");
        assert_eq!(conn.phase, Phase::Rest { answered: false });
        assert!(conn.deadline.is_none());
    }
}
