//! The gRPC wire format, generated from proto/millstream/v1 by build.rs (prost).
#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/millstream.v1.rs"));
