//! What a gRPC answer of the kubelet or the container runtime becomes once decoded, bounded before
//! it is decoded.
//!
//! A protobuf answer can grow many times over when decoded: an empty repeated message is 2 bytes
//! on the wire and a struct of several vectors in memory. So each answer is fetched as bytes (at
//! most [`MAX_WIRE`]), walked once without allocating to bound what decoding it would take
//! ([`decoded_bound`], from the shape of the messages: every message its struct's size, every
//! string or unknown field its length plus an allocation, every packed number 8 bytes, all
//! doubled for vector growth), and decoded only when that bound is at most [`MAX_DECODED`].
//! One answer is held at a time ([`one_at_a_time`]): the pod-resources and runtime tasks take
//! turns, so the worst case is one answer's bytes plus its bounded decoded form.

use std::mem::size_of;

use bytes::{Buf, Bytes};
use prost::Message;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::pb::{cri, v1};

/// The largest answer accepted on the wire (a node of 110 pods answers tens of KiB).
pub const MAX_WIRE: usize = 4 * 1024 * 1024;
/// The most memory an answer may take once decoded, as [`decoded_bound`] reckons it (about
/// 10,000 pods of the pod-resources API; a few thousand containers of the runtime).
pub const MAX_DECODED: usize = 16 * 1024 * 1024;

static ONE_ANSWER: Semaphore = Semaphore::const_new(1);

/// Held while an answer is fetched, decoded and turned into names.
pub async fn one_at_a_time() -> SemaphorePermit<'static> {
    ONE_ANSWER.acquire().await.expect("never closed")
}

/// A message's shape: its struct's size and which of its fields are messages or packed numbers.
pub struct Shape {
    size: usize,
    fields: &'static [(u32, Field)],
}

/// A field that is not a plain string, bytes or scalar.
pub enum Field {
    Message(&'static Shape),
    /// `repeated int64` (packed): up to 8 bytes decoded per byte on the wire.
    Packed,
}

const fn leaf(size: usize) -> Shape {
    Shape { size, fields: &[] }
}

static NUMA: Shape = leaf(size_of::<v1::NumaNode>());
static TOPOLOGY: Shape = Shape {
    size: size_of::<v1::TopologyInfo>(),
    fields: &[(1, Field::Message(&NUMA))],
};
static DEVICES: Shape = Shape {
    size: size_of::<v1::ContainerDevices>(),
    fields: &[(3, Field::Message(&TOPOLOGY))],
};
static MEMORY: Shape = Shape {
    size: size_of::<v1::ContainerMemory>(),
    fields: &[(3, Field::Message(&TOPOLOGY))],
};
static CDI: Shape = leaf(size_of::<v1::CdiDevice>());
static CLAIM: Shape = Shape {
    size: size_of::<v1::ClaimResource>(),
    fields: &[(1, Field::Message(&CDI))],
};
static DYNAMIC: Shape = Shape {
    size: size_of::<v1::DynamicResource>(),
    fields: &[(4, Field::Message(&CLAIM))],
};
static CONTAINER: Shape = Shape {
    size: size_of::<v1::ContainerResources>(),
    fields: &[
        (2, Field::Message(&DEVICES)),
        (3, Field::Packed),
        (4, Field::Message(&MEMORY)),
        (5, Field::Message(&DYNAMIC)),
    ],
};
static POD: Shape = Shape {
    size: size_of::<v1::PodResources>(),
    fields: &[(3, Field::Message(&CONTAINER))],
};
/// `v1.ListPodResourcesResponse`.
pub static POD_RESOURCES: Shape = Shape {
    size: size_of::<v1::ListPodResourcesResponse>(),
    fields: &[(1, Field::Message(&POD))],
};

/// A `map<string, string>` entry: two strings and the hash table's share.
static MAP_ENTRY: Shape = leaf(2 * size_of::<String>() + 16);
static SANDBOX_META: Shape = leaf(size_of::<cri::PodSandboxMetadata>());
static SANDBOX: Shape = Shape {
    size: size_of::<cri::PodSandbox>(),
    fields: &[
        (2, Field::Message(&SANDBOX_META)),
        (5, Field::Message(&MAP_ENTRY)),
        (6, Field::Message(&MAP_ENTRY)),
    ],
};
/// `runtime.v1.ListPodSandboxResponse`.
pub static SANDBOXES: Shape = Shape {
    size: size_of::<cri::ListPodSandboxResponse>(),
    fields: &[(1, Field::Message(&SANDBOX))],
};
static CONTAINER_META: Shape = leaf(size_of::<cri::ContainerMetadata>());
static IMAGE: Shape = Shape {
    size: size_of::<cri::ImageSpec>(),
    fields: &[(2, Field::Message(&MAP_ENTRY))],
};
static CRI_CONTAINER: Shape = Shape {
    size: size_of::<cri::Container>(),
    fields: &[
        (3, Field::Message(&CONTAINER_META)),
        (4, Field::Message(&IMAGE)),
        (8, Field::Message(&MAP_ENTRY)),
        (9, Field::Message(&MAP_ENTRY)),
    ],
};
/// `runtime.v1.ListContainersResponse`.
pub static CONTAINERS: Shape = Shape {
    size: size_of::<cri::ListContainersResponse>(),
    fields: &[(1, Field::Message(&CRI_CONTAINER))],
};

/// What one heap allocation costs beyond its bytes (the allocator's rounding and header).
const ALLOCATION: usize = 32;

/// An upper bound on the memory decoding `bytes` as `shape` takes, or why the bytes are not a
/// message. Walks the wire format once; allocates nothing.
pub fn decoded_bound(bytes: &[u8], shape: &Shape) -> Result<usize, &'static str> {
    Ok(2 * (shape.size + fields_bound(bytes, shape)?))
}

fn fields_bound(mut bytes: &[u8], shape: &Shape) -> Result<usize, &'static str> {
    let mut total = 0usize;
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let number = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        let cost = match key & 7 {
            0 => varint(&mut bytes).map(|_| 8)?,
            1 => skip(&mut bytes, 8).map(|_| 8)?,
            5 => skip(&mut bytes, 4).map(|_| 8)?,
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).map_err(|_| "length too large")?;
                let payload = bytes.get(..len).ok_or("truncated")?;
                bytes = &bytes[len..];
                match shape.fields.iter().find(|(n, _)| *n == number) {
                    Some((_, Field::Message(inner))) => {
                        inner.size + ALLOCATION + fields_bound(payload, inner)?
                    }
                    Some((_, Field::Packed)) => 8 * len + ALLOCATION,
                    None => size_of::<String>() + len + ALLOCATION,
                }
            }
            _ => return Err("a group or an invalid wire type"),
        };
        total = total.saturating_add(cost);
    }
    Ok(total)
}

fn varint(bytes: &mut &[u8]) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first().ok_or("truncated")?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err("varint too long")
}

fn skip(bytes: &mut &[u8], n: usize) -> Result<(), &'static str> {
    *bytes = bytes.get(n..).ok_or("truncated")?;
    Ok(())
}

/// Decodes `bytes` as `M` when its bound allows; the error is a stable description.
pub fn decode<M: Message + Default>(bytes: Bytes, shape: &Shape) -> Result<M, String> {
    let bound = decoded_bound(&bytes, shape).map_err(|e| format!("malformed answer: {e}"))?;
    if bound > MAX_DECODED {
        return Err(format!(
            "answer too large: would take up to {} MiB decoded (bound {} MiB)",
            bound >> 20,
            MAX_DECODED >> 20
        ));
    }
    M::decode(bytes).map_err(|_| "malformed answer".to_string())
}

/// A codec that hands back the answer's bytes undecoded (requests are encoded with prost).
pub struct RawCodec<Req>(std::marker::PhantomData<Req>);

impl<Req> Default for RawCodec<Req> {
    fn default() -> Self {
        RawCodec(std::marker::PhantomData)
    }
}

/// The bytes of one answer.
pub struct RawDecoder;

impl tonic::codec::Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

impl<Req: Message + Send + 'static> tonic::codec::Codec for RawCodec<Req> {
    type Encode = Req;
    type Decode = Bytes;
    type Encoder = <tonic_prost::ProstCodec<Req, ()> as tonic::codec::Codec>::Encoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstCodec::<Req, ()>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// One unary call on `channel` at `path`, its answer as bytes (at most [`MAX_WIRE`]).
pub async fn call<Req: Message + Send + 'static>(
    channel: tonic::transport::Channel,
    path: &'static str,
    request: Req,
) -> Result<Bytes, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_WIRE);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(request),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        RawCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_messages_are_bounded_by_their_structs_and_real_lists_pass() {
        // 100,000 empty containers: 2 bytes each on the wire, a struct each decoded.
        let mut bytes = vec![0x0a, 0x00];
        let pod = {
            let mut p = Vec::new();
            for _ in 0..100_000 {
                p.extend_from_slice(&[0x1a, 0x00]);
            }
            p
        };
        bytes.clear();
        bytes.push(0x0a);
        prost::encoding::encode_varint(pod.len() as u64, &mut bytes);
        bytes.extend_from_slice(&pod);
        let bound = decoded_bound(&bytes, &POD_RESOURCES).unwrap();
        assert!(
            bound > 100_000 * size_of::<v1::ContainerResources>(),
            "{bound}"
        );
        let decoded: v1::ListPodResourcesResponse = prost::Message::decode(&bytes[..]).unwrap();
        assert_eq!(decoded.pod_resources[0].containers.len(), 100_000);

        // A realistic list: 500 pods, one GPU container each.
        let list = v1::ListPodResourcesResponse {
            pod_resources: (0..500)
                .map(|i| v1::PodResources {
                    name: format!("train-{i}"),
                    namespace: "team-a".into(),
                    containers: vec![v1::ContainerResources {
                        name: "main".into(),
                        devices: vec![v1::ContainerDevices {
                            resource_name: "nvidia.com/gpu".into(),
                            device_ids: vec![format!("GPU-{i:036}")],
                            topology: None,
                        }],
                        cpu_ids: vec![1, 2, 3, 4],
                        ..Default::default()
                    }],
                })
                .collect(),
        };
        let wire = list.encode_to_vec();
        let bound = decoded_bound(&wire, &POD_RESOURCES).unwrap();
        assert!(bound < 2 * 1024 * 1024, "{bound}");
        let back: v1::ListPodResourcesResponse = decode(wire.into(), &POD_RESOURCES).unwrap();
        assert_eq!(back, list);
    }

    #[test]
    fn malformed_bytes_are_refused_not_a_panic() {
        for bad in [&[0x0a, 0x05, 0x01][..], &[0xff; 11], &[0x0b], &[0x0a]] {
            assert!(decoded_bound(bad, &POD_RESOURCES).is_err(), "{bad:?}");
        }
        assert_eq!(decoded_bound(&[], &SANDBOXES).unwrap(), 2 * SANDBOXES.size);
    }
}
