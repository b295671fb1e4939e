//! COMMAND replies compared byte for byte with redis-server 7.0.15.

use super::*;
use crate::command::tests::GETKEYS;

fn reply(args: &[&str]) -> Vec<u8> {
    let mut out = BytesMut::new();
    command_reply(args, &mut out);
    out.to_vec()
}
