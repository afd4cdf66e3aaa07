//! The `/metrics` body as two chunks: the exposition shared by every scrape of one poll (a
//! reference count, not a copy) and this scrape's self-metrics. A connection whose peer does not
//! read its answer therefore holds only its own few KiB of self-metrics, never its own copy of a
//! large exposition (docs/reliability.md, "Unread responses"). The exact length is known, so the
//! response still carries `Content-Length`.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// The exposition, then the tail.
pub struct SharedBody {
    /// Chunks still to send, in reverse order (popped from the end).
    chunks: Vec<Bytes>,
    remaining: u64,
}

impl SharedBody {
    pub fn new(exposition: Bytes, tail: Vec<u8>) -> SharedBody {
        let remaining = (exposition.len() + tail.len()) as u64;
        let chunks = [Bytes::from(tail), exposition]
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect();
        SharedBody { chunks, remaining }
    }
}

impl Body for SharedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.chunks.pop();
        if let Some(chunk) = &next {
            self.remaining -= chunk.len() as u64;
        }
        Poll::Ready(next.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chunks_come_in_order_with_their_exact_length() {
        let exposition = Bytes::from_static(b"vram_total_bytes 1\n");
        let mut body = SharedBody::new(exposition.clone(), b"self 2\n".to_vec());
        assert_eq!(body.size_hint().exact(), Some(26));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut collected = Vec::new();
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
            collected.extend_from_slice(&frame.into_data().unwrap());
        }
        assert_eq!(collected, b"vram_total_bytes 1\nself 2\n");
        assert!(body.is_end_stream());
        let empty = SharedBody::new(Bytes::new(), Vec::new());
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }
}
