#ifndef C_RELAY_PROCESS_H
#define C_RELAY_PROCESS_H

#include <sys/prctl.h>

/// prctl(2) is variadic, which Swift cannot call: this fixes its arguments.
/// Returns 0 once the process is no longer dumpable (no core file, no ptrace or /proc/PID/mem by its own user).
static inline int relay_forbid_dumping(void) {
    return prctl(PR_SET_DUMPABLE, 0UL, 0UL, 0UL, 0UL);
}

#endif
