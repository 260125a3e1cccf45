//! Socket buffers whose memory grows with use and is given back when the connection idles.
//!
//! Layer: part of the sans-IO netstack core (memory only: no sockets, no clocks). smoltcp
//! cannot resize a socket's buffers, and a connection must be able to hold a whole 81 KB reply
//! in flight, so each socket gets its full capacity up front — but as address space, not as
//! memory: a [`PageBuf`] is an anonymous private mapping whose pages the kernel supplies,
//! zeroed, only when first written. A keep-alive connection that answered a 200-byte health
//! check touches one page of each buffer, not 144 KiB; nothing is zeroed by us (the `memset`
//! that dominated the over-cap refusal profile in issue 12 is gone). When a connection has been
//! quiet for a while with both buffers empty, [`PageBuf::release`] hands its pages back
//! (`MADV_DONTNEED`), so an idle connection holds no buffer memory at all; the next request
//! simply faults fresh pages in. [`PageBuf::resident`] counts the pages actually held
//! (`mincore`), for the stack's statistics and the tests.
//!
//! Safety: the slice handed to smoltcp points into the mapping and is `'static` only by
//! promise: the [`Stack`](super::Stack) drops a socket before the `PageBuf` behind it (it
//! removes the socket from its set first, and its `sockets` field is declared before the
//! buffers so it is also dropped first), and calls `release` only while the socket's ring
//! buffers are empty, when smoltcp reads nothing from them before writing again.

use std::ptr::NonNull;

/// An anonymous mapping of `len` bytes (page-rounded) that owns its pages.
pub(crate) struct PageBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a PageBuf is plain memory owned by one value; nothing in it is thread-bound.
unsafe impl Send for PageBuf {}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

impl PageBuf {
    /// Reserves `len` bytes (rounded up to whole pages); no page is resident yet. Fails like an
    /// allocation does (abort) when the address space is exhausted.
    pub(crate) fn new(len: usize) -> PageBuf {
        let page = page_size();
        let len = len.max(1).div_ceil(page) * page;
        // SAFETY: a fresh anonymous private mapping; arguments are valid for mmap.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(len, page).expect("page-rounded layout"),
            );
        }
        PageBuf {
            ptr: NonNull::new(p.cast()).expect("mmap never returns null on success"),
            len,
        }
    }

    /// The bytes, for a smoltcp socket buffer.
    ///
    /// # Safety
    /// The slice must not be used after `self` is dropped, and only one slice may be live.
    pub(crate) unsafe fn slice(&self) -> &'static mut [u8] {
        // SAFETY: the mapping is `len` readable and writable bytes; the caller keeps it alive
        // and unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Capacity in bytes (whole pages).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Gives every page back to the kernel; the contents read as zero afterwards. Call only
    /// when the buffer holds no data anyone will read.
    pub(crate) fn release(&self) {
        // SAFETY: the range is our own mapping. MADV_DONTNEED on private anonymous memory only
        // replaces its contents with zero pages, which the caller has declared don't matter.
        unsafe {
            libc::madvise(self.ptr.as_ptr().cast(), self.len, libc::MADV_DONTNEED);
        }
    }

    /// Bytes of the buffer held in memory now (resident pages × page size).
    pub(crate) fn resident(&self) -> usize {
        let page = page_size();
        let mut vec = vec![0u8; self.len / page];
        // SAFETY: the range is our own page-aligned mapping and `vec` has one byte per page.
        let r = unsafe { libc::mincore(self.ptr.as_ptr().cast(), self.len, vec.as_mut_ptr()) };
        if r != 0 {
            return self.len; // unknown: count it all
        }
        vec.iter().filter(|b| *b & 1 == 1).count() * page
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once; no slice of it outlives us (type contract).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages become resident when written, not when reserved, and go back on release.
    #[test]
    fn pages_are_held_only_while_used() {
        let b = PageBuf::new(128 * 1024);
        assert_eq!(b.len(), 128 * 1024);
        assert_eq!(b.resident(), 0, "reserving touches nothing");
        // SAFETY: one slice, dropped before `b`.
        let s = unsafe { b.slice() };
        s[0] = 1;
        s[100] = 2;
        assert_eq!(b.resident(), page_size(), "one page written, one page held");
        s[..81 * 1024].fill(7);
        assert!(b.resident() >= 81 * 1024);
        b.release();
        assert_eq!(b.resident(), 0);
        assert_eq!(s[0], 0, "released pages read as zero");
    }
}
