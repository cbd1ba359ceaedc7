//! What is measured: the senders, the protocols, and one measurement.

/// What sends the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sender {
    FullCopy,
    Reader4K,
    Reader64K,
    Mmap,
    Mmap64K,
    Mmap4M,
    MmapKeep,
    MmapNoHint,
    MmapNoGuard,
    MmapReplay,
    Sendfile,
    WriteFloor,
    ServeMmap,
    ServeFile,
    ReqwestFile,
    ReqwestBytes,
    ReqwestStack,
    ProxyPlain,
    ProxySpill,
    ProxyReplay,
    ManyMmap,
    ManyReader64K,
    ManyServeMmap,
    ManyServeFile,
    FileLeased,
    FilePread,
    ServeFileBody,
    ServeFilePread,
}

impl Sender {
    pub(crate) const ALL: [Sender; 28] = [
        Sender::FullCopy,
        Sender::Reader4K,
        Sender::Reader64K,
        Sender::Mmap,
        Sender::Mmap64K,
        Sender::Mmap4M,
        Sender::MmapKeep,
        Sender::MmapNoHint,
        Sender::MmapNoGuard,
        Sender::MmapReplay,
        Sender::Sendfile,
        Sender::WriteFloor,
        Sender::ServeMmap,
        Sender::ServeFile,
        Sender::ReqwestFile,
        Sender::ReqwestBytes,
        Sender::ReqwestStack,
        Sender::ProxyPlain,
        Sender::ProxySpill,
        Sender::ProxyReplay,
        Sender::ManyMmap,
        Sender::ManyReader64K,
        Sender::ManyServeMmap,
        Sender::ManyServeFile,
        Sender::FileLeased,
        Sender::FilePread,
        Sender::ServeFileBody,
        Sender::ServeFilePread,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Sender::FullCopy => "full-copy",
            Sender::Reader4K => "reader-4k",
            Sender::Reader64K => "reader-64k",
            Sender::Mmap => "mmap",
            Sender::Mmap64K => "mmap-64k",
            Sender::Mmap4M => "mmap-4m",
            Sender::MmapKeep => "mmap-keep",
            Sender::MmapNoHint => "mmap-nohint",
            Sender::MmapNoGuard => "mmap-noguard",
            Sender::MmapReplay => "mmap+replay",
            Sender::Sendfile => "sendfile",
            Sender::WriteFloor => "write-floor",
            Sender::ServeMmap => "serve-mmap",
            Sender::ServeFile => "serve-file",
            Sender::ReqwestFile => "reqwest-file",
            Sender::ReqwestBytes => "reqwest-bytes",
            Sender::ReqwestStack => "reqwest-stack",
            Sender::ProxyPlain => "proxy-plain",
            Sender::ProxySpill => "proxy-spill",
            Sender::ProxyReplay => "proxy-replay",
            Sender::ManyMmap => "many-mmap",
            Sender::ManyReader64K => "many-reader-64k",
            Sender::ManyServeMmap => "many-serve-mmap",
            Sender::ManyServeFile => "many-serve-file",
            Sender::FileLeased => "file-leased",
            Sender::FilePread => "file-pread",
            Sender::ServeFileBody => "serve-filebody",
            Sender::ServeFilePread => "serve-filebody-pread",
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Sender::FullCopy => "`tokio::fs::read` + `Full<Bytes>`",
            Sender::Reader4K => "`ReaderStream` 4 KiB (reqwest `Body::from(File)`)",
            Sender::Reader64K => "`ReaderStream` 64 KiB",
            Sender::Mmap => "**`MmapBody`** (1 MiB frames, default)",
            Sender::Mmap64K => "`MmapBody` 64 KiB frames",
            Sender::Mmap4M => "`MmapBody` 4 MiB frames",
            Sender::MmapKeep => "`MmapBody`, sent pages kept mapped",
            Sender::MmapNoHint => "`MmapBody`, no access hints",
            Sender::MmapNoGuard => "`MmapBody` after `guard::opt_out()`",
            Sender::MmapReplay => "`MmapBody` behind `ReplayLayer`",
            Sender::Sendfile => "`sendfile(2)`, hand-written head",
            Sender::WriteFloor => "`write(2)` of a resident buffer, hand-written head",
            Sender::ServeMmap => "**`MmapBody`** from a hyper server",
            Sender::ServeFile => "tower-http `ServeFile`",
            Sender::ReqwestFile => "reqwest `Body::from(File)`",
            Sender::ReqwestBytes => "reqwest `Body::from(Bytes::from(MmapBody))`",
            Sender::ReqwestStack => "**`MmapBody`** via `ReqwestService` + layers",
            Sender::ProxyPlain => "`MmapBody` → hyper proxy, plain forwarding",
            Sender::ProxySpill => "`MmapBody` → proxy with `ReplayLayer` + spill",
            Sender::ProxyReplay => "proxy + spill, 2 attempts (503 after all)",
            Sender::ManyMmap => "**`MmapBody`**, 32 files at once",
            Sender::ManyReader64K => "`ReaderStream` 64 KiB, 32 files at once",
            Sender::ManyServeMmap => "**`serve::respond`**, 8 clients at once",
            Sender::ManyServeFile => "tower-http `ServeFile`, 8 clients at once",
            Sender::FileLeased => "**`FileBody`**, leased (zero-copy)",
            Sender::FilePread => "`FileBody`, no lease (`pread`, 1 MiB)",
            Sender::ServeFileBody => "**`FileBody`** (leased) from `serve::respond`",
            Sender::ServeFilePread => "`FileBody` (`pread`) from `serve::respond`",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Sender> {
        Sender::ALL.into_iter().find(|s| s.name() == name)
    }

    pub(crate) fn is_download(self) -> bool {
        matches!(
            self,
            Sender::ServeMmap
                | Sender::ServeFile
                | Sender::ManyServeMmap
                | Sender::ManyServeFile
                | Sender::ServeFileBody
                | Sender::ServeFilePread
        )
    }

    /// Clients downloading the whole file at once from the server.
    pub(crate) fn clients(self) -> usize {
        match self {
            Sender::ManyServeMmap | Sender::ManyServeFile => 8,
            _ => 1,
        }
    }

    pub(crate) fn is_proxy(self) -> bool {
        matches!(
            self,
            Sender::ProxyPlain | Sender::ProxySpill | Sender::ProxyReplay
        )
    }

    /// 32 uploads at once, of 32 files of 1/16 of `--size` each.
    pub(crate) fn is_many(self) -> bool {
        matches!(self, Sender::ManyMmap | Sender::ManyReader64K)
    }

    pub(crate) fn is_reqwest(self) -> bool {
        matches!(
            self,
            Sender::ReqwestFile | Sender::ReqwestBytes | Sender::ReqwestStack
        )
    }

    /// A hand-written head and a loop of system calls: no runtime, no
    /// hyper.
    pub(crate) fn is_raw(self) -> bool {
        matches!(self, Sender::Sendfile | Sender::WriteFloor)
    }

    /// Runs over HTTP/1.1 only: a hand-written head, or the proxy's.
    pub(crate) fn h1_only(self) -> bool {
        self.is_raw() || self.is_proxy()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    H1,
    H2,
}

impl Proto {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Proto::H1 => "h1",
            Proto::H2 => "h2",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Proto> {
        [Proto::H1, Proto::H2]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Case {
    pub(crate) sender: Sender,
    pub(crate) proto: Proto,
}

/// One measurement of one case.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) secs: f64,
    pub(crate) cpu_secs: f64,
    pub(crate) heap_peak: u64,
    pub(crate) allocations: u64,
    pub(crate) peak_rss_kib: u64,
    /// Major page faults on the sender's runtime thread, and a 1 ms
    /// ticker's lags on that runtime; for a download, the server's runtime.
    pub(crate) neighbour: Option<crate::neighbour::Neighbour>,
    pub(crate) framing: String,
    /// `proxy-replay`: the seconds of its first and second attempt.
    pub(crate) attempts: Option<(f64, f64)>,
    /// Bytes sent in all, when not the one file of `--size` (the `many-*`
    /// cases); 0 otherwise.
    pub(crate) bytes: u64,
}

impl Sample {
    /// Bytes this measurement sent, given the bench's file size.
    pub(crate) fn sent(&self, size: u64) -> u64 {
        if self.bytes == 0 {
            size
        } else {
            self.bytes
        }
    }
}
