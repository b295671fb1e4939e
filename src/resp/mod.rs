//! RESP2 wire protocol: incremental, zero-copy decoding and encoding. Pure: no I/O.
