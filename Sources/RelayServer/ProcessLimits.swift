#if canImport(Glibc)
import Glibc
#endif

/// Resource limits the daemon sets on itself. Under the systemd unit, `LimitNOFILE=` and `LimitCORE=`
/// set them instead (its system-call filter refuses `setrlimit`); these cover a daemon started by hand.
enum ProcessLimits {
    /// Every connection holds a descriptor, and a process often starts with a soft limit of 1,024 open
    /// files. Raises the soft limit to the hard limit; returns the limit now in force.
    @discardableResult
    static func raiseOpenFiles() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return UInt64(raised.rlim_cur) }
        }
        return UInt64(limit.rlim_cur)
    }

    /// A core dump could hold plaintext in flight or a live sealing context: allow none.
    static func refuseCoreDumps() {
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        _ = setrlimit(Int32(RLIMIT_CORE.rawValue), &none)
    }
}
