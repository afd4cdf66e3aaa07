//! A write timeout for a connection: a peer that stops reading cannot hold a response (and the
//! memory behind it) for longer than the timeout.
//!
//! hyper has a header-read timeout but no write timeout: a client that pipelines requests and
//! never reads the answers kept each connection's unsent response alive for as long as the
//! socket stayed open. [`WriteTimeout`] wraps the connection's stream: when a write or flush has
//! been pending (the socket's send buffer full) for the whole timeout without progress, it fails
//! with `TimedOut` and hyper closes the connection, freeing the response. Any progress restarts
//! the clock, so a slow but reading client is never cut off.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `inner` with writes that fail after `timeout` without progress.
pub struct WriteTimeout<I> {
    inner: I,
    timeout: Duration,
    /// Armed while a write is pending; reset by progress.
    deadline: Option<Pin<Box<Sleep>>>,
    /// True while a write waits for the peer (the connection cap evicts such a connection first).
    waiting: Arc<AtomicBool>,
}

impl<I> WriteTimeout<I> {
    pub fn new(inner: I, timeout: Duration, waiting: Arc<AtomicBool>) -> Self {
        WriteTimeout {
            inner,
            timeout,
            deadline: None,
            waiting,
        }
    }

    /// After a pending write: arms the clock if needed; an error once it has run out.
    fn pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let timeout = self.timeout;
        self.waiting.store(true, Ordering::Release);
        let sleep = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer did not read the response within the write timeout",
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    fn check<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => match self.pending(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            done => {
                if self.deadline.take().is_some() {
                    self.waiting.store(false, Ordering::Release);
                }
                done
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteTimeout<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[test]
    fn a_peer_that_never_reads_fails_the_write_and_one_that_reads_does_not() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // A 64-byte pipe nobody reads: the second write waits, then times out.
            let (client, _unread) = tokio::io::duplex(64);
            let waiting = Arc::new(AtomicBool::new(false));
            let mut w = WriteTimeout::new(client, Duration::from_millis(100), waiting.clone());
            let e = w.write_all(&[0u8; 1024]).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut);
            assert!(
                waiting.load(Ordering::Acquire),
                "marked as waiting for its peer"
            );

            // A peer that reads slowly (but within the timeout each time) gets everything.
            let (client, mut reader) = tokio::io::duplex(64);
            let waiting = Arc::new(AtomicBool::new(false));
            let mut w = WriteTimeout::new(client, Duration::from_secs(5), waiting.clone());
            let read = tokio::spawn(async move {
                use tokio::io::AsyncReadExt as _;
                let mut got = Vec::new();
                let mut buf = [0u8; 16];
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    match reader.read(&mut buf).await.unwrap() {
                        0 => break got,
                        n => got.extend_from_slice(&buf[..n]),
                    }
                }
            });
            w.write_all(&[7u8; 1024]).await.unwrap();
            w.shutdown().await.unwrap();
            drop(w);
            assert_eq!(read.await.unwrap().len(), 1024);
            assert!(!waiting.load(Ordering::Acquire), "progress clears the mark");
        });
    }
}
