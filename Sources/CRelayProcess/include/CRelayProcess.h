#ifndef C_RELAY_PROCESS_H
#define C_RELAY_PROCESS_H

#include <sys/prctl.h>
#include <sys/vfs.h>
#include <linux/magic.h>

/// prctl(2) is variadic, which Swift cannot call: this fixes its arguments.
/// Returns 0 once the process is no longer dumpable (no core file, no ptrace or /proc/PID/mem by its own user).
static inline int relay_forbid_dumping(void) {
    return prctl(PR_SET_DUMPABLE, 0UL, 0UL, 0UL, 0UL);
}

/// Whether `path` is on a tmpfs (kept in memory): statfs(2) is not in Swift's Glibc module.
static inline int relay_is_in_memory(const char *path) {
    struct statfs filesystem;
    return statfs(path, &filesystem) == 0 && filesystem.f_type == TMPFS_MAGIC;
}

#endif
