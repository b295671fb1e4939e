//! The Redis 7.0 command table: arity, flags and key positions of every command. Pure: no I/O.
