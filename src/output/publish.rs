//! What readers get after each poll: the engine's snapshot together with its exposition, rendered
//! once here, where the snapshot is published, so the engine renders nothing and a scrape only
//! copies bytes.
//!
//! The gzip form of the exposition is made here too, at most once per publication: lazily, by the
//! first scrape that asks for gzip, then shared by every later one until the next poll. Lazily,
//! because polls (1 s by default) usually outnumber scrapes (15–60 s), so compressing every poll on
//! the poller thread would mostly be wasted and would lengthen the polls the exporter times. The
//! compressed exposition is a gzip member left open (its deflate stream sync-flushed, not
//! finished); a scrape appends the self-metrics, compressed on their own (a few KiB), then the
//! trailer with the CRC carried on. The client receives one ordinary gzip member.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};

use crate::model::engine::Snapshot;
use crate::output::exposition;

/// One poll's result as every reader (HTTP handlers, cleanup) sees it; never mutated.
#[derive(Debug, Clone)]
pub struct Published {
    pub snapshot: Snapshot,
    /// The domain part of `/metrics` for `snapshot`.
    pub exposition: Bytes,
    /// `processes.max_per_gpu`: the processes per GPU that the exposition and the JSON API list.
    pub max_processes_per_gpu: usize,
    /// `exposition` as the open start of a gzip member, made on first use.
    gzip: OnceLock<Option<GzipPrefix>>,
}

/// A shared handle to the newest publication, as carried by the poller's `watch` channel.
pub type SharedPublished = Arc<Published>;

impl Published {
    /// Renders `snapshot`'s exposition with at most `max_processes_per_gpu` process series per GPU.
    pub fn new(snapshot: Snapshot, max_processes_per_gpu: usize) -> Self {
        let exposition = exposition::render(&snapshot, max_processes_per_gpu);
        Published {
            snapshot,
            exposition,
            max_processes_per_gpu,
            gzip: OnceLock::new(),
        }
    }

    /// What readers see before the first poll: not ready, NVML not (yet) up.
    pub fn initial(max_processes_per_gpu: usize) -> Self {
        Self::new(Snapshot::initial(), max_processes_per_gpu)
    }

    /// The exposition followed by `tail` (the self-metrics) as one gzip member; the exposition is
    /// compressed once per publication, `tail` on every call. `None` only if compression failed
    /// (it cannot with these parameters), in which case the caller serves the plain text.
    pub fn gzip_with(&self, tail: &[u8]) -> Option<Vec<u8>> {
        self.gzip
            .get_or_init(|| GzipPrefix::new(&self.exposition))
            .as_ref()?
            .finish(tail)
    }
}

/// Compression level 1: on the 8-GPU node it makes the scrape 11× smaller in a fifth of the time
/// level 6 takes for 15× (BENCHMARKS.md, "gzip"). With one scraper and polls more frequent than
/// scrapes every gzip scrape is the first after its poll and pays for the compression, so speed
/// counts.
const LEVEL: u32 = 1;

/// A gzip header (RFC 1952): deflate, no flags, no mtime, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// The open start of a gzip member: header and sync-flushed deflate blocks of `len` bytes whose
/// CRC-32 is `crc`.
#[derive(Debug, Clone)]
struct GzipPrefix {
    bytes: Bytes,
    crc: u32,
    len: usize,
}

impl GzipPrefix {
    fn new(data: &[u8]) -> Option<GzipPrefix> {
        let mut out = Vec::with_capacity(GZIP_HEADER.len() + data.len() / 4 + 64);
        out.extend_from_slice(&GZIP_HEADER);
        deflate(data, FlushCompress::Sync, &mut out)?;
        Some(GzipPrefix {
            bytes: out.into(),
            crc: crc32fast::hash(data),
            len: data.len(),
        })
    }

    /// This prefix, `tail` deflated by a fresh compressor into the final block (deflate blocks
    /// never depend on earlier ones once the stream is flushed), then the trailer.
    fn finish(&self, tail: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.bytes.len() + tail.len() / 3 + 64);
        out.extend_from_slice(&self.bytes);
        deflate(tail, FlushCompress::Finish, &mut out)?;
        let mut crc = crc32fast::Hasher::new_with_initial(self.crc);
        crc.update(tail);
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32 (RFC 1952).
        out.extend_from_slice(&((self.len + tail.len()) as u32).to_le_bytes());
        Some(out)
    }
}

/// Appends raw deflate data for `input` to `out`, ending with a sync flush (the stream stays open)
/// or a finished stream.
fn deflate(input: &[u8], flush: FlushCompress, out: &mut Vec<u8>) -> Option<()> {
    let mut c = Compress::new(Compression::new(LEVEL), false);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(input.len() / 4 + 1024);
        }
        let consumed = c.total_in() as usize;
        let status = c.compress_vec(&input[consumed..], out, flush).ok()?;
        let all_in = c.total_in() as usize == input.len();
        let done = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            // zlib's rule: a flush is complete when it left output space unused.
            _ => all_in && out.len() < out.capacity(),
        };
        if done {
            return Some(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        // A single-member decoder: what curl and most clients use.
        let mut d = flate2::read::GzDecoder::new(data);
        let mut out = Vec::new();
        d.read_to_end(&mut out).expect("valid gzip");
        out
    }

    #[test]
    fn exposition_and_tail_decode_as_one_member() {
        let p = Published::initial(16);
        let tail = b"# HELP process_x y\n# TYPE process_x gauge\nprocess_x 1\n".repeat(40);
        let gz = p.gzip_with(&tail).unwrap();
        let mut expected = p.exposition.to_vec();
        expected.extend_from_slice(&tail);
        assert_eq!(gunzip(&gz), expected);
        assert!(
            gz.len() < expected.len() / 3,
            "{} of {}",
            gz.len(),
            expected.len()
        );
        // The prefix is made once and reused with another tail.
        let again = p.gzip_with(b"").unwrap();
        assert_eq!(gunzip(&again), p.exposition.to_vec());
    }

    #[test]
    fn large_and_empty_inputs() {
        let big: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("m{{i=\"{i}\"}} {}\n", i * 7).into_bytes())
            .collect();
        let prefix = GzipPrefix::new(&big).unwrap();
        let tail = b"x 1\n";
        let mut expected = big.clone();
        expected.extend_from_slice(tail);
        assert_eq!(gunzip(&prefix.finish(tail).unwrap()), expected);
        let empty = GzipPrefix::new(b"").unwrap();
        assert_eq!(gunzip(&empty.finish(b"").unwrap()), b"");
    }
}
