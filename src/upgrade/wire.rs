//! The upgrade socket's framing: length-prefixed messages over a Unix stream socket, each
//! carrying up to [`MAX_FDS`] file descriptors (`SCM_RIGHTS`).
//!
//! ```text
//!  frame:  u32 body length (big-endian) │ u8 descriptors attached │ body (JSON, see `Message`)
//!  the descriptors travel as SCM_RIGHTS ancillary data on the frame's first byte
//! ```
//!
//! The kernel hands ancillary data to the `recvmsg` that reads the first byte it came with,
//! possibly together with bytes of earlier frames; the receiver keeps every descriptor it got
//! in arrival order and gives a frame the ones it announces once the frame is complete. Since
//! a frame's descriptors arrive no later than its first byte, arrival order is frame order.
//!
//! Written over `std`'s `UnixStream` and `libc`'s `sendmsg`/`recvmsg` (both already
//! dependencies): the whole of what is needed is these two calls, in blocking mode, on the
//! upgrade threads; a crate would add a dependency for ~100 lines.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Descriptors one frame may carry.
pub const MAX_FDS: usize = 4;
/// Largest frame body accepted (a session's state with its unread request bytes).
pub const MAX_BODY: usize = 1 << 30;
/// Bytes before a frame's body.
const HEADER: usize = 5;
/// Bytes read per `recvmsg`.
const CHUNK: usize = 64 * 1024;

/// The header of a frame of `len` body bytes carrying `fds` descriptors.
fn header(len: usize, fds: usize) -> io::Result<[u8; HEADER]> {
    if len > MAX_BODY || fds > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame too large: {len} bytes, {fds} descriptors"),
        ));
    }
    let mut out = [0; HEADER];
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    out[4] = fds as u8;
    Ok(out)
}

/// Send one frame: `body` with `fds` attached (duplicated by the kernel into the receiver;
/// the caller still owns and closes its own).
pub fn send(stream: &UnixStream, body: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(HEADER + body.len());
    frame.extend_from_slice(&header(body.len(), fds.len())?);
    frame.extend_from_slice(body);
    let sent = send_with_fds(stream, &frame, fds)?;
    // The rest (a large body) goes without ancillary data.
    let mut rest = frame.get(sent..).unwrap_or_default();
    let mut writer = stream;
    while !rest.is_empty() {
        let n = writer.write(rest)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        rest = rest.get(n..).unwrap_or_default();
    }
    Ok(())
}

/// One `sendmsg` of (a first part of) `bytes` with `fds` as `SCM_RIGHTS`; returns the bytes
/// sent (at least one, so the descriptors went with them).
fn send_with_fds(stream: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    // u64 words: aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8).max(1)];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` writable, aligned bytes, enough for one
        // header and `fds.len()` descriptors (CMSG_SPACE); CMSG_FIRSTHDR is therefore non-null
        // and CMSG_DATA has room for `fd_bytes`.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                fd_bytes,
            );
        }
    }
    loop {
        // SAFETY: msg points at live buffers (iov → bytes, control) for the call's duration.
        let n = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reads frames from a stream, keeping descriptors until their frame is complete.
#[derive(Debug)]
pub struct Receiver {
    stream: UnixStream,
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
}

/// One received frame.
#[derive(Debug)]
pub struct Frame {
    /// The body.
    pub body: Vec<u8>,
    /// The descriptors it carried, in the order sent (now owned by this process).
    pub fds: Vec<OwnedFd>,
}

impl Receiver {
    /// Read frames from `stream` (blocking; its read timeout applies).
    pub fn new(stream: UnixStream) -> Receiver {
        Receiver {
            stream,
            buf: Vec::new(),
            fds: VecDeque::new(),
        }
    }

    /// The stream (for its timeouts).
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// The next frame; `None` when the peer closed between frames.
    pub fn recv(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.take()? {
                return Ok(Some(frame));
            }
            if self.read_some()? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed in the middle of a frame",
                ));
            }
        }
    }

    /// A complete frame from the buffer, if there is one.
    fn take(&mut self) -> io::Result<Option<Frame>> {
        let Some(head) = self.buf.get(..HEADER) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let count = usize::from(head[4]);
        if len > MAX_BODY || count > MAX_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad frame header: {len} bytes, {count} descriptors"),
            ));
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        if self.fds.len() < count {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a frame announced {count} descriptors, {} arrived",
                    self.fds.len()
                ),
            ));
        }
        let body = self.buf[HEADER..HEADER + len].to_vec();
        self.buf.drain(..HEADER + len);
        let fds = self.fds.drain(..count).collect();
        Ok(Some(Frame { body, fds }))
    }

    /// One `recvmsg`: bytes into the buffer, descriptors into the queue. Returns the bytes
    /// read (0: end of stream).
    fn read_some(&mut self) -> io::Result<usize> {
        let mut chunk = vec![0u8; CHUNK];
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE((MAX_FDS * 4 * std::mem::size_of::<RawFd>()) as u32) }
            as usize;
        let mut control = vec![0u64; space.div_ceil(8)];
        let mut iov = libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: chunk.len(),
        };
        // SAFETY: msghdr is plain data; zeroed is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let n = loop {
            // SAFETY: msg points at live, writable buffers (chunk, control) for the call.
            let n =
                unsafe { libc::recvmsg(self.stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        // SAFETY: the kernel filled `msg`'s control area; the CMSG_* walk stays within
        // msg_controllen, and each SCM_RIGHTS payload holds whole descriptors it installed in
        // this process (so taking ownership of them is right: nobody else closes them).
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg);
                    let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    for i in 0..bytes / std::mem::size_of::<RawFd>() {
                        let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                        self.fds.push_back(OwnedFd::from_raw_fd(fd));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "descriptors were lost (control data truncated)",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    /// A file with `text` in it, as an fd to pass.
    fn file_with(text: &str) -> std::fs::File {
        let path = std::env::temp_dir().join(format!(
            "slotgate-wire-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    fn read_back(fd: OwnedFd) -> String {
        let mut file = std::fs::File::from(fd);
        file.rewind().unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn frames_keep_their_bodies_and_descriptors_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let (one, two, three) = (file_with("one"), file_with("two"), file_with("three"));
        send(&a, b"first", &[one.as_raw_fd()]).unwrap();
        send(&a, b"", &[]).unwrap();
        send(&a, b"third", &[two.as_raw_fd(), three.as_raw_fd()]).unwrap();
        drop(a);
        let mut rx = Receiver::new(b);
        let first = rx.recv().unwrap().unwrap();
        assert_eq!(first.body, b"first");
        assert_eq!(
            first.fds.into_iter().map(read_back).collect::<Vec<_>>(),
            ["one"]
        );
        let second = rx.recv().unwrap().unwrap();
        assert!(second.body.is_empty() && second.fds.is_empty());
        let third = rx.recv().unwrap().unwrap();
        assert_eq!(third.body, b"third");
        assert_eq!(
            third.fds.into_iter().map(read_back).collect::<Vec<_>>(),
            ["two", "three"]
        );
        assert!(rx.recv().unwrap().is_none(), "end of stream between frames");
    }

    #[test]
    fn a_body_larger_than_one_read_arrives_whole() {
        let (a, b) = UnixStream::pair().unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let file = file_with("fd");
        let sender = {
            let big = big.clone();
            std::thread::spawn(move || send(&a, &big, &[file.as_raw_fd()]).unwrap())
        };
        let mut rx = Receiver::new(b);
        let frame = rx.recv().unwrap().unwrap();
        sender.join().unwrap();
        assert_eq!(frame.body, big);
        assert_eq!(frame.fds.len(), 1);
    }

    #[test]
    fn a_truncated_frame_or_a_missing_descriptor_is_an_error() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[0, 0, 0, 9, 0, b'x']).unwrap();
        drop(a);
        let err = Receiver::new(b).recv().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

        let (mut a, b) = UnixStream::pair().unwrap();
        // Announces one descriptor, sends none.
        a.write_all(&[0, 0, 0, 1, 1, b'x']).unwrap();
        let err = Receiver::new(b).recv().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");

        assert!(header(1, MAX_FDS + 1).is_err());
    }
}
