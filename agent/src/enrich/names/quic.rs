//! quic.
